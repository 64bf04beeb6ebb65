#!/usr/bin/perl
# Runs the C unit tests of load balancing over priority levels (t/unit/test_lb.c).
use strict; use warnings;
my $bin = ($ENV{MESHGATE_BUILDDIR} // 'build') . '/t/unit/test_lb';
unless (-x $bin) { print "1..0 # SKIP $bin not built (make check builds it)\n"; exit 0 }
exec $bin or die "exec $bin: $!";
