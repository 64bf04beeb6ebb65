#!/usr/bin/perl

# TLS to upstreams resumes sessions: a worker's new connection to a peer it
# already spoke to skips the full handshake. Shown for HTTP/2 connections
# that the upstream ends after each stream (GOAWAY), and for HTTP/1.1 over
# TLS without pooling, against the Python backend, which logs whether each
# connection resumed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Meshgate;

plan(skip_all => 'no openssl command')
    if system('openssl version >/dev/null 2>&1') != 0;
plan(skip_all => 'no python3 with the h2 package')
    unless Test::Meshgate::h2_python();

my $t = Test::Meshgate->new;
$t->make_ca('ca');
$t->make_cert('srv', cn => 'up.test', san => 'DNS:up.test');
$t->run_h2_backend(port => 8081, name => 'h2', tls_cert => 'srv.crt',
    tls_key => 'srv.key', goaway_after => 1);
$t->run_h2_backend(port => 8082, name => 'h1', tls_cert => 'srv.crt',
    tls_key => 'srv.key', alpn => 'http/1.1');

$t->write_conf(<<'EOF2');
gateway = { workers = 1; drain_timeout = 1.0; log_level = "info"; };
listeners = ( { name = "h1"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; } );
routes = { mesh = (
    { domains = [ "h2.test" ]; prefix = "/"; cluster = "h2"; },
    { domains = [ "h1.test" ]; prefix = "/"; cluster = "h1"; } ); };
clusters = (
    { name = "h2"; protocol = "h2"; connect_timeout = 2.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } );
      tls = { ca = "ca.crt"; sni = "up.test"; }; },
    { name = "h1"; max_idle = 0; connect_timeout = 2.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } );
      tls = { ca = "ca.crt"; sni = "up.test"; }; } );
EOF2
$t->run;

for my $case ([ 'h2', 8081 ], [ 'h1', 8082 ]) {
    my ($name, $num) = @$case;
    my $ok = 0;
    for my $i (1 .. 6) {
        my $r = parse_response(http_get("/n$i", host => "$name.test") // "", eof => 1);
        $ok++ if ($r->{status} // 0) == 200;
        # One connection at a time: each ends before the next starts.
        select(undef, undef, undef, 0.15);
    }
    is($ok, 6, "$name: six requests over TLS, each on a new connection");
    my @conns = $t->h2_events($num, ev => 'conn_open');
    cmp_ok(scalar @conns, '>=', 6, "$name: the upstream saw a connection "
        . 'each (' . scalar(@conns) . ')');
    my @resumed = grep { $_->{session_reused} } @conns;
    ok(@conns && !$conns[0]{session_reused},
        "$name: the first connection is a full handshake");
    cmp_ok(scalar @resumed, '>=', scalar(@conns) - 2,
        "$name: later connections resume the session ("
        . scalar(@resumed) . ' of ' . scalar(@conns) . ')');
}

$t->stop_and_check;
done_testing();
