#!/usr/bin/perl

# `meshgate -t -c FILE` on broken configs: exit status 1 and every error as
# "FILE:LINE: reason" on stderr; a valid config exits 0 and says so.

use strict;
use warnings;

use File::Path qw(make_path);
use File::Temp qw(tempdir);
use Test::More;

my $bin = $ENV{MESHGATE_BINARY};
plan(skip_all => 'MESHGATE_BINARY is not set to an executable meshgate')
    unless defined $bin && -x $bin;
plan(tests => 28);

my $dir = tempdir('mg-10config-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $n = 0;

# Writes |$text| as main.conf of a fresh directory, plus conf.d files given
# as name => text; returns the main file's path.
sub write_conf {
    my ($text, %confd) = @_;
    my $d = "$dir/" . ++$n;
    make_path("$d/conf.d");
    for my $f ("main.conf", map { "conf.d/$_" } sort keys %confd) {
        my $body = $f eq 'main.conf' ? $text : $confd{ $f =~ s{^conf\.d/}{}r };
        open(my $fh, '>', "$d/$f") or die "$d/$f: $!";
        print $fh $body;
        close($fh) or die "$d/$f: $!";
    }
    return "$d/main.conf";
}

# Runs meshgate -t -c |$conf|; returns (exit status, stdout, stderr).
sub check {
    my ($conf) = @_;
    my $out = "$dir/out.$n";
    my $err = "$dir/err.$n";
    system("'$bin' -t -c '$conf' >'$out' 2>'$err'");
    my $status = $? == -1 ? -1 : ($? & 127) ? 128 + ($? & 127) : $? >> 8;
    local $/;
    open(my $o, '<', $out) or die $!;
    open(my $e, '<', $err) or die $!;
    return ($status, scalar <$o> // '', scalar <$e> // '');
}

my $listener = <<'EOF';
listeners = ( { name = "mesh"; listen = "127.0.0.1:18000";
                routes = "mesh"; } );
EOF
my $cluster = <<'EOF';
clusters = ( { name = "users";
               endpoints = ( { address = "127.0.0.1:18081"; } ); } );
EOF
my $routes = <<'EOF';
routes = { mesh = ( { domains = [ "*" ]; prefix = "/";
                      cluster = "users"; } ); };
EOF

# A valid config.

my $conf = write_conf(<<'EOF' . $listener . $cluster . $routes);
gateway = { workers = 1; log_level = "info"; };
admin = { listen = "127.0.0.1:19901"; };
EOF
my ($st, $out, $err) = check($conf);
is($st, 0, 'a valid config exits 0') or diag($err);
like($out . $err, qr/\Q$conf\E.*successful/,
    'a valid config is reported as successful');
unlike($err, qr/\Q$conf\E:\d+:/, 'a valid config prints no error line');

# Unknown key.

$conf = write_conf(<<'EOF' . $cluster . $routes);
listeners = ( { name = "mesh"; listen = "127.0.0.1:18000";
                routes = "mesh";
                no_such_key = 1; } );
EOF
($st, $out, $err) = check($conf);
is($st, 1, 'an unknown key exits 1');
like($err, qr/^\Q$conf\E:3: unknown key "no_such_key" in listener$/m,
    'an unknown key is reported with its file and line');

# Bad address.

$conf = write_conf(<<'EOF' . $cluster . $routes);
listeners = ( { name = "mesh";
                listen = "127.0.0.1:99999";
                routes = "mesh"; } );
EOF
($st, $out, $err) = check($conf);
is($st, 1, 'a bad address exits 1');
like($err, qr/^\Q$conf\E:2: bad address "127\.0\.0\.1:99999": .+$/m,
    'a bad address is reported with its file, line and reason');

# Dangling cluster reference.

$conf = write_conf($listener . $cluster . <<'EOF');
routes = { mesh = ( { domains = [ "*" ]; prefix = "/";
                      cluster = "orders"; } ); };
EOF
($st, $out, $err) = check($conf);
is($st, 1, 'a route to an undefined cluster exits 1');
like($err, qr/^\Q$conf\E:6: .*cluster orders is not defined$/m,
    'the undefined cluster is reported at the route\'s cluster line');

# Dangling route table.

$conf = write_conf(<<'EOF' . $cluster . $routes);
listeners = ( { name = "mesh"; listen = "127.0.0.1:18000";
                routes = "public"; } );
EOF
($st, $out, $err) = check($conf);
is($st, 1, 'a listener with an undefined route table exits 1');
like($err, qr/^\Q$conf\E:2: listener mesh: route table public is not defined$/m,
    'the undefined route table is reported with file and line');

# Duplicate names.

$conf = write_conf($listener . $routes . <<'EOF');
clusters = ( { name = "users";
               endpoints = ( { address = "127.0.0.1:18081"; } ); },
             { name = "users";
               endpoints = ( { address = "127.0.0.1:18082"; } ); } );
EOF
($st, $out, $err) = check($conf);
is($st, 1, 'a duplicate cluster name exits 1');
like($err,
    qr/^\Q$conf\E:7: duplicate cluster name "users", first defined at \Q$conf\E:5$/m,
    'the duplicate name points at both definitions');

$conf = write_conf(<<'EOF' . $cluster . $routes);
listeners = ( { name = "mesh"; listen = "127.0.0.1:18000"; routes = "mesh"; },
              { name = "mesh"; listen = "127.0.0.1:18001"; routes = "mesh"; } );
EOF
($st, $out, $err) = check($conf);
is($st, 1, 'a duplicate listener name exits 1');
like($err, qr/^\Q$conf\E:2: duplicate listener name "mesh"/m,
    'the duplicate listener is reported at its line');

# Unset environment variable.

delete $ENV{MG_TEST_10CONFIG_UNSET};
$conf = write_conf(<<'EOF' . $cluster . $routes);
listeners = ( { name = "mesh";
                listen = "127.0.0.1:${MG_TEST_10CONFIG_UNSET}";
                routes = "mesh"; } );
EOF
($st, $out, $err) = check($conf);
is($st, 1, 'an unset environment variable exits 1');
like($err,
    qr/^\Q$conf\E:2: environment variable MG_TEST_10CONFIG_UNSET is not set$/m,
    'the unset variable is named with file and line');

{
    local $ENV{MG_TEST_10CONFIG_PORT} = '18002';
    $conf = write_conf(<<'EOF' . $cluster . $routes);
listeners = ( { name = "mesh";
                listen = "127.0.0.1:${MG_TEST_10CONFIG_PORT}";
                routes = "mesh"; } );
EOF
    ($st, $out, $err) = check($conf);
    is($st, 0, 'a set environment variable is substituted') or diag($err);
}

# An error in a conf.d file names that file.

$conf = write_conf($listener . $routes,
    '10-users.conf' => $cluster,
    '20-orders.conf' => <<'EOF');
clusters = ( { name = "orders";
               endpoints = ( { address = "orders..svc:8080"; } ); } );
EOF
(my $confd = $conf) =~ s{main\.conf$}{conf.d/20-orders.conf};
($st, $out, $err) = check($conf);
is($st, 1, 'an error in a conf.d file exits 1');
like($err,
    qr/^\Q$confd\E:2: bad address "orders\.\.svc:8080": bad host name$/m,
    'the conf.d file is named in the error');

$conf = write_conf($listener . $routes, '10-users.conf' => $cluster);
($st, $out, $err) = check($conf);
is($st, 0, 'a cluster from conf.d satisfies a route of the main file')
    or diag($err);

# Two errors at once: both printed, one line each.

$conf = write_conf(<<'EOF' . $routes);
gateway = { workers = 0; };
listeners = ( { name = "mesh"; listen = "nowhere"; routes = "mesh"; } );
clusters = ( { name = "users";
               endpoints = ( { address = "127.0.0.1:18081"; } ); } );
EOF
($st, $out, $err) = check($conf);
is($st, 1, 'two errors exit 1');
like($err, qr/^\Q$conf\E:1: key "workers" must be between 1 and 512$/m,
    'the first of two errors is printed');
like($err, qr/^\Q$conf\E:2: bad address "nowhere": missing port$/m,
    'the second of two errors is printed');
is(scalar(() = $err =~ /^\Q$conf\E:\d+: /mg), 2, 'exactly two error lines');

# A syntax error from libconfig itself.

$conf = write_conf("gateway = { workers = = 1; };\n");
($st, $out, $err) = check($conf);
is($st, 1, 'a syntax error exits 1');
like($err, qr/^\Q$conf\E:1: syntax error$/m,
    'the syntax error is reported with its file and line');

# The admin listener must stay on loopback unless allowed.

$conf = write_conf(qq{admin = { listen = "0.0.0.0:19901"; };\n});
($st, $out, $err) = check($conf);
like($err,
    qr/^\Q$conf\E:1: admin listen address 0\.0\.0\.0:19901 is not loopback; set admin\.allow_remote = true to allow it$/m,
    'a non-loopback admin address is refused');
