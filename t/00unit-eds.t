#!/usr/bin/perl
# Runs the C unit tests of the discovery table (t/unit/test_eds.c).
use strict; use warnings;
my $bin = ($ENV{MESHGATE_BUILDDIR} // 'build') . '/t/unit/test_eds';
unless (-x $bin) { print "1..0 # SKIP $bin not built (make check builds it)\n"; exit 0 }
exec $bin or die "exec $bin: $!";
