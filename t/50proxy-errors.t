#!/usr/bin/perl

# Upstream failures as the client sees them: 503 when no endpoint accepts
# (after trying the others), 502 for a reset, an invalid response or a
# close before the answer, 504 after the response timeout, and no visible
# failure when a pooled keep-alive connection was closed by the upstream.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Test::Meshgate;

my $t = Test::Meshgate->new;

$t->run_backend(port => 8081, name => 'b1');
$t->run_backend(port => 8082, name => 'b2', args => [ '--idle-timeout', '0.3' ]);
# Ports 8091..8093 are reserved for this test and nothing listens there.
port($_) for 8091 .. 8093;
$t->write_conf(<<'EOF');
gateway = { workers = 1; drain_timeout = 1.0; log_level = "info"; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; access_log = "%%TESTDIR%%/access.log"; } );
routes = { mesh = (
    { domains = [ "dead.test" ]; prefix = "/"; cluster = "dead"; },
    { domains = [ "dead3.test" ]; prefix = "/"; cluster = "dead3"; },
    { domains = [ "half.test" ]; prefix = "/"; cluster = "half"; },
    { domains = [ "third.test" ]; prefix = "/"; cluster = "third"; },
    { domains = [ "rt.test" ]; prefix = "/delay/"; cluster = "live";
      timeout = 0.5; },
    { domains = [ "rt2.test" ]; prefix = "/delay/"; cluster = "live";
      timeout = 2.5; },
    { domains = [ "live.test" ]; prefix = "/"; cluster = "live"; },
    { domains = [ "short.test" ]; prefix = "/"; cluster = "idle"; } ); };
clusters = (
    { name = "dead"; connect_timeout = 1.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8091%%"; } ); },
    { name = "dead3"; connect_timeout = 1.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8091%%"; },
                    { address = "127.0.0.1:%%PORT_8092%%"; },
                    { address = "127.0.0.1:%%PORT_8093%%"; } ); },
    { name = "half"; lb = "round_robin";
      endpoints = ( { address = "127.0.0.1:%%PORT_8091%%"; },
                    { address = "127.0.0.1:%%PORT_8081%%"; } ); },
    { name = "third"; lb = "round_robin";
      endpoints = ( { address = "127.0.0.1:%%PORT_8091%%"; },
                    { address = "127.0.0.1:%%PORT_8092%%"; },
                    { address = "127.0.0.1:%%PORT_8081%%"; } ); },
    { name = "live"; response_timeout = 1.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); },
    { name = "idle"; response_timeout = 5.0; idle_timeout = 60.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } ); } );
EOF
$t->run;

sub get {
    my ($host, $path, %o) = @_;
    my $start = time;
    my $r = parse_response(http_get($path, host => $host, timeout => 8, %o));
    $r->{took} = time - $start;
    return $r;
}

# 503: nothing accepts.
my $r = get('dead.test', '/x');
is($r->{status}, 503, 'a refused connection gets 503');
like($r->{headers}{'content-type'} // '', qr{^text/plain}, 'text/plain');
like($r->{body}, qr/\bdead\b/, 'the reason names the cluster')
    or diag($r->{body});
$r = get('dead3.test', '/x');
is($r->{status}, 503, 'three refusing endpoints get 503');
like($r->{body}, qr/\bdead3\b/, 'naming that cluster');
ok($r->{took} < 3, 'quickly') or diag("took $r->{took} s");
{
    my %tried;
    waitfor(sub {
        $tried{$_} = 1 for $t->log =~ /(\d+\.\d+\.\d+\.\d+:\d+)\D[^\n]*\bdead3\b/g;
        return keys %tried >= 3;
    }, 3);
    is_deeply([ sort keys %tried ],
        [ sort map { '127.0.0.1:' . port($_) } 8091 .. 8093 ],
        'each of the three endpoints was tried (error log)');
}
{
    my $c = Test::Meshgate::Client->new(port => port(8000));
    my $r1 = $c->get('/x', host => 'dead.test');
    my $r2 = $c->get('/ok', host => 'live.test');
    is($r1 && $r1->{status}, 503, 'a 503 on a keep-alive connection');
    is($r2 && $r2->{body}, "b1 GET /ok\n",
        'and the connection serves the next request');
    $c->close;
}

# A dead endpoint next to live ones is skipped.
my @st = map { get('half.test', "/h$_")->{status} // 0 } 1 .. 20;
is(scalar(grep { $_ == 200 } @st), 20,
    'one dead and one live endpoint: all 20 requests get 200')
    or diag("@st");
@st = map { get('third.test', "/t$_")->{status} // 0 } 1 .. 15;
is(scalar(grep { $_ == 200 } @st), 15,
    'two dead and one live endpoint: all 15 requests get 200')
    or diag("@st");
$r = parse_response(http("POST /echo HTTP/1.1\r\nHost: half.test\r\n"
    . "Content-Length: 4\r\nConnection: close\r\n\r\nbody"));
is($r->{status}, 200, 'a POST is sent to the live endpoint too');
like($r->{body}, qr/\r\n\r\nbody\z/, 'with its body');

# 502: reset, garbage, dropped.
for my $case ([ '/reset', 'a reset' ], [ '/garbage', 'an invalid response' ],
    [ '/drop', 'a close before the answer' ])
{
    my ($path, $what) = @$case;
    $r = get('live.test', $path);
    is($r->{status}, 502, "$what gets 502");
    $r = parse_response(http("POST $path HTTP/1.1\r\nHost: live.test\r\n"
        . "Content-Length: 2\r\nConnection: close\r\n\r\nhi", timeout => 8));
    is($r->{status}, 502, "$what to a POST gets 502");
}
{
    my $c = Test::Meshgate::Client->new(port => port(8000));
    my $r1 = $c->get('/garbage', host => 'live.test');
    my $r2 = $c->get('/after-garbage', host => 'live.test');
    is($r1 && $r1->{status}, 502, 'a 502 on a keep-alive connection');
    is($r2 && $r2->{body}, "b1 GET /after-garbage\n",
        'and the connection serves the next request');
    $c->close;
}

# 504: response_timeout of the cluster (1 s), and of the route (0.5 s).
$r = get('live.test', '/delay/3000');
is($r->{status}, 504, 'no response within response_timeout gets 504');
ok($r->{took} >= 0.8 && $r->{took} < 2.5, 'after about 1 s')
    or diag("took $r->{took} s");
{
    # The late answer to the timed-out request must not reach anyone.
    my @b;
    for my $i (1 .. 3) {
        push @b, get('live.test', "/after-504-$i")->{body} // '';
    }
    is_deeply(\@b, [ map { "b1 GET /after-504-$_\n" } 1 .. 3 ],
        'requests after a 504 get their own responses');
}
$r = get('rt.test', '/delay/3000');
is($r->{status}, 504, 'the route timeout gets 504');
ok($r->{took} >= 0.3 && $r->{took} < 0.9, 'after about 0.5 s, not 1 s')
    or diag("took $r->{took} s");
$r = get('rt2.test', '/delay/1500');
is($r->{status}, 200,
    'a route timeout longer than the cluster response_timeout replaces it');
$r = get('live.test', '/delay/300');
is($r->{status}, 200, 'a response within the timeout passes');

# Pooled connections the upstream closed: /keepalive-close answers as
# keep-alive and closes; b2 also closes idle connections after 0.3 s.
@st = ();
for my $i (1 .. 10) {
    push @st, get('live.test', '/keepalive-close')->{status} // 0;
    push @st, get('live.test', "/after-close-$i")->{status} // 0;
}
is(scalar(grep { $_ == 200 } @st), 20,
    'requests after the upstream closed a pooled connection all get 200')
    or diag("@st");
@st = ();
for my $i (1 .. 10) {
    push @st, get('live.test', "/keepalive-close/30")->{status} // 0;
    push @st, get('live.test', "/ka-$i", method => 'HEAD')->{status} // 0;
}
is(scalar(grep { $_ == 200 } @st), 20,
    'also when the close comes a little later (HEAD)') or diag("@st");
@st = ();
my %seen;
for my $i (1 .. 4) {
    my $x = get('short.test', "/idle-$i");
    push @st, $x->{status} // 0;
    my $pid = $x->{headers}{'x-backend-pid'} // 0;
    $seen{$pid}++;
    # The backend process of the connection exits at its idle timeout.
    waitfor(sub { $pid && !-e "/proc/$pid" }, 3);
}
is(scalar(grep { $_ == 200 } @st), 4,
    'requests after the upstream timed out a pooled connection get 200')
    or diag("@st");
is(scalar(keys %seen), 4, 'each on a new upstream connection');

# Clients that go away in the middle: the upstream connection is not
# reused with a half-read response or a half-sent body.
{
    my $s = http("GET /bytes/50000000 HTTP/1.1\r\nHost: live.test\r\n\r\n",
        start => 1);
    my $buf = '';
    waitfor(sub {
        sysread($s, $buf, 65536, length $buf);
        return length $buf > 100_000;
    }, 5);
    close $s;
    $s = http("GET /delay/500 HTTP/1.1\r\nHost: live.test\r\n\r\n",
        start => 1);
    close $s;
    $s = http("POST /upload HTTP/1.1\r\nHost: live.test\r\n"
        . "Content-Length: 100000\r\n\r\n" . ('u' x 50_000), start => 1);
    close $s;
    $s = http("POST /upload HTTP/1.1\r\nHost: live.test\r\n"
        . "Transfer-Encoding: chunked\r\n\r\n100\r\n" . ('u' x 128),
        start => 1);
    close $s;
    my @b;
    for my $i (1 .. 10) {
        push @b, get('live.test', "/after-abort-$i")->{body} // '';
    }
    is_deeply(\@b, [ map { "b1 GET /after-abort-$_\n" } 1 .. 10 ],
        'after aborted downloads and uploads each request gets its own answer');
    my $r = parse_response(http("POST /upload HTTP/1.1\r\n"
        . "Host: live.test\r\nContent-Length: 5\r\nConnection: close\r\n"
        . "\r\nhello"));
    like($r->{body}, qr/^bytes=5 /, 'and an upload still works');
}

$t->stop_and_check;
done_testing();
