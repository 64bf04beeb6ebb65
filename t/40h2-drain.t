#!/usr/bin/perl

# HTTP/2 across a reload (SIGHUP): a connection with a slow stream in
# flight gets GOAWAY (NO_ERROR), the stream still completes with 200, the
# connection then closes, the old worker exits, and new connections reach
# the new generation. An idle HTTP/2 connection gets GOAWAY and is closed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use POSIX ();
use Test::More;
use Test::Meshgate;

my $py = (grep { system("$_ -c 'import h2' >/dev/null 2>&1") == 0 }
    '/usr/bin/python3', 'python3')[0];
plan(skip_all => 'no python3 with the h2 package (python3-h2)') unless $py;
for my $tool (qw(curl nghttp)) {
    plan(skip_all => "$tool is not installed")
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}
my $h2raw = "$FindBin::Bin/lib/h2raw.py";

my $t = Test::Meshgate->new;

sub conf {
    my ($body) = @_;
    return <<"EOF";
gateway = { workers = 1; drain_timeout = 10.0; log_level = "info"; };
listeners = ( { name = "h2c"; listen = "127.0.0.1:%%PORT_8000%%"; h2c = true;
                routes = "mesh"; } );
routes = { mesh = ( { domains = [ "direct.test" ]; prefix = "/";
                      direct_response = { status = 200; body = "$body\\n"; }; },
                    { domains = [ "*" ]; prefix = "/"; cluster = "backend"; } ); };
clusters = ( { name = "backend"; response_timeout = 30.0;
               endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); } );
EOF
}

my $backend = $t->run_backend(port => 8081, name => 'b1', verbose => 1);
$t->write_conf(conf('gen-1'));
$t->run;
my $port = port(8000);
my $base = "http://127.0.0.1:$port";

sub gen_body {
    my $out = `timeout 20 curl -sS --http2-prior-knowledge --max-time 10 -H 'Host: direct.test' $base/ 2>&1`;
    return $out;
}

# Requests for |path| the backend has seen so far.
sub backend_saw {
    my ($path) = @_;
    my @n = $t->daemon_log($backend) =~ /\bGET \Q$path\E HTTP/g;
    return scalar @n;
}

is(gen_body(), "gen-1\n", 'generation 1 answers over h2c');
my $gen = 1;

# reload_during($client_pid, $path, $body): waits until the backend has
# the slow request, writes a config answering $body and reloads.
sub reload_during {
    my ($path, $seen, $body) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok(waitfor(sub { backend_saw($path) > $seen }, 10),
        "the slow request $path reached the backend");
    my @old = $t->worker_pids;
    $t->write_conf(conf($body));
    is($t->reload, 1, 'the reload starts a new generation');
    $gen++;
    return @old;
}

# Python's h2 stack: every frame is seen.
{
    my $path = '/delay/1500';
    my $seen = backend_saw($path);
    my $pid = $t->run_daemon($py, $h2raw, 'drain', $port, $path);
    ok(waitfor(sub { $t->daemon_log($pid) =~ /^sent$/m }, 10),
        'the client has sent its request');
    my @old = reload_during($path, $seen, 'gen-2');
    is(gen_body(), "gen-2\n", 'a new connection reaches the new generation');

    ok(waitfor(sub { $t->daemon_log($pid) =~ /^(?:closed|timeout)$/m }, 20),
        'the draining connection ends');
    my $log = $t->daemon_log($pid);
    like($log, qr/^goaway error=0 last=1$/m,
        'the client got GOAWAY NO_ERROR, with its stream as the last one')
        or diag($log);
    like($log, qr/^result goaway_before_end=1$/m,
        'GOAWAY came while the stream was in flight');
    like($log, qr/^status stream=1 code=200$/m, 'the stream still gets 200');
    like($log, qr/^body stream=1 len=\d+ text=delayed 1500\\n$/m,
        'and its whole body');
    like($log, qr/^end stream=1$/m, 'and ends normally');
    unlike($log, qr/^rst /m, 'nothing is reset');
    like($log, qr/^closed$/m, 'then the server closes the connection');
    ok(waitfor(sub {
        my %now = map { $_ => 1 } $t->worker_pids;
        return !grep { $now{$_} } @old;
    }, 10), 'the old worker exits once its connection is done');
    $t->stop_daemons($pid);
}

# nghttp, a real client.
{
    my $path = '/delay/1600';
    my $seen = backend_saw($path);
    my $pid = $t->run_daemon('/bin/sh', '-c', "nghttp -v -t 20 "
        . "-H ':authority: b.test' $base$path; echo nghttp exit \$?");
    my @old = reload_during($path, $seen, 'gen-3');
    is(gen_body(), "gen-3\n", 'a new connection reaches generation 3');
    ok(waitfor(sub { $t->daemon_log($pid) =~ /^nghttp exit \d+$/m }, 20),
        'nghttp finishes');
    my $log = $t->daemon_log($pid);
    like($log, qr/^nghttp exit 0$/m, 'nghttp exits 0') or diag($log);
    like($log, qr/recv GOAWAY frame.*\n.*error_code=NO_ERROR/,
        'nghttp saw GOAWAY NO_ERROR');
    like($log, qr/recv \(stream_id=13\) :status: 200/,
        'its stream got 200');
    like($log, qr/^delayed 1600$/m, 'and the body');
    ok(waitfor(sub {
        my %now = map { $_ => 1 } $t->worker_pids;
        return !grep { $now{$_} } @old;
    }, 10), 'the old worker exits');
    $t->stop_daemons($pid);
}

# An idle connection: GOAWAY, then closed, without waiting for
# drain_timeout (10 s).
{
    my $pid = $t->run_daemon($py, $h2raw, 'drain', $port, '/idle');
    ok(waitfor(sub { $t->daemon_log($pid) =~ /^result /m }, 10),
        'a request on a connection that then stays idle');
    my @old = $t->worker_pids;
    $t->write_conf(conf('gen-4'));
    is($t->reload, 1, 'reload');
    ok(waitfor(sub { $t->daemon_log($pid) =~ /^(?:closed|timeout)$/m }, 8),
        'the idle connection is closed');
    my $log = $t->daemon_log($pid);
    like($log, qr/^goaway error=0 /m, 'after a GOAWAY NO_ERROR')
        or diag($log);
    like($log, qr/^closed$/m, 'closed by the server, well before the '
        . 'drain timeout');
    ok(waitfor(sub {
        my %now = map { $_ => 1 } $t->worker_pids;
        return !grep { $now{$_} } @old;
    }, 5), 'the old worker exits');
    is(gen_body(), "gen-4\n", 'generation 4 answers');
    $t->stop_daemons($pid);
}

$t->stop_and_check;
done_testing();
