#!/usr/bin/perl

# Every configuration shipped under conf.d/ passes `meshgate -t`: the
# default one as it is, and each example once the certificate files it
# names exist (they are made here, self-signed, beside a copy of it).

use strict;
use warnings;

use File::Basename qw(basename dirname);
use File::Find;
use File::Path qw(make_path);
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Meshgate;

my $t = Test::Meshgate->new;
my $top = "$FindBin::Bin/..";
my $dir = $t->testdir;
plan(skip_all => 'no openssl command')
    if system('openssl version >/dev/null 2>&1') != 0;

my @examples;
find(sub { push @examples, $File::Find::name if /\.conf$/ },
    "$top/conf.d/examples");
@examples = sort @examples;
ok(@examples >= 3, 'examples found: ' . join ' ', map { basename $_ } @examples);

my $res = $t->run_binary('-t', '-c', "$top/conf.d/meshgate.conf");
is($res->{status}, 0, 'the shipped conf.d/meshgate.conf passes -t')
    or diag($res->{stderr});

my $n = 0;
for my $ex (@examples) {
    my $name = basename($ex);
    my $copy = "$dir/ex" . ++$n;
    make_path($copy);
    my $text = Test::Meshgate::read_file($ex);
    open my $fh, '>', "$copy/$name" or die "$copy/$name: $!\n";
    print $fh $text;
    close $fh;
    # Certificates and keys it names, relative to its own folder.
    my %files;
    $files{$1} = 1 while $text =~ /\b(?:cert|key|ca|client_ca)\s*=\s*"([^"]+)"/g;
    for my $f (sort keys %files) {
        next if $f =~ m{^/};
        make_path(dirname("$copy/$f"));
    }
    for my $f (sort keys %files) {
        next if $f =~ m{^/} || $f !~ /\.pem$/;
        (my $key = $f) =~ s/\.pem$/.key/;
        system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256"
            . " -nodes -subj '/CN=example' -days 2 -keyout '$copy/$key'"
            . " -out '$copy/$f' >/dev/null 2>&1") == 0
            or die "openssl for $f failed\n";
    }
    my $r = $t->run_binary('-t', '-c', "$copy/$name");
    is($r->{status}, 0, "conf.d/examples/.../$name passes -t")
        or diag($r->{stderr});
}

$t->stop_and_check;
done_testing();
