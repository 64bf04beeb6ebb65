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

# Kubernetes manifests: the configuration in each ConfigMap passes -t with
# the environment the Pod spec gives it, certificates made where it names
# them (moved under the copy's folder); the ports the Pod spec exposes are
# the ones the configuration listens on.
my @manifests = sort glob("$top/conf.d/examples/kubernetes/*.yaml");
ok(@manifests >= 2, 'Kubernetes manifests: ' . join ' ',
    map { basename $_ } @manifests);
for my $m (@manifests) {
    my $name = basename($m);
    my $yaml = Test::Meshgate::read_file($m);
    # The block scalar under "meshgate.conf: |", as far as it is indented.
    my ($indent, $body) = $yaml =~ /^( +)meshgate\.conf: \|\n((?:\1 +.*\n|\s*\n)+)/m;
    ok(defined $body, "$name: holds a meshgate.conf") or next;
    $body =~ s/^$indent  //mg;
    my $copy = "$dir/k8s-" . ++$n;
    make_path("$copy/tls");
    $body =~ s{"/etc/meshgate/tls/}{"tls/}g;
    open my $fh, '>', "$copy/meshgate.conf" or die "$copy: $!\n";
    print $fh $body;
    close $fh;
    my %files;
    $files{$1} = 1 while $body =~ /\b(?:cert|key|ca|client_ca)\s*=\s*"(tls\/[^"]+)\.crt"/g;
    for my $f (sort keys %files) {
        system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256"
            . " -nodes -subj '/CN=example' -days 2 -keyout '$copy/$f.key'"
            . " -out '$copy/$f.crt' >/dev/null 2>&1") == 0
            or die "openssl for $f failed\n";
    }
    my %env;
    $env{$1} = $2 while $yaml =~ /\{ name: (MESHGATE_\w+), value: "([^"]*)" \}/g;
    ok(exists $env{MESHGATE_REGION}, "$name: the Pod spec sets MESHGATE_REGION");
    my $r;
    {
        local @ENV{keys %env} = values %env;
        $r = $t->run_binary('-t', '-c', "$copy/meshgate.conf");
    }
    is($r->{status}, 0, "$name: its configuration passes -t")
        or diag($r->{stderr});
    my @listen = $body =~ /listen = "[^"]*:(\d+)"/g;
    # The meshgate container's ports (the application has its own).
    my ($spec) = $yaml =~ /- name: meshgate\n(.*?)(?:\n +- name: [a-z]|\z)/s;
    my @ports = ($spec // '') =~ /containerPort: (\d+)/g;
    my %listen = map { $_ => 1 } @listen;
    is_deeply([ grep { !$listen{$_} } @ports ], [],
        "$name: every container port is a listener (@ports)");
}

$t->stop_and_check;
done_testing();
