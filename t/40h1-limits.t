#!/usr/bin/perl

# HTTP/1.1 request limits and connection handling on the wire: 414, 431,
# 413, 505, 501, pipelining, keep-alive, HTTP/1.0, Expect: 100-continue,
# the request header timeout (408) and the idle timeout.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Errno qw(EINTR EAGAIN EWOULDBLOCK);
use IO::Select;
use Test::More;
use Time::HiRes qw(time sleep);
use Test::Meshgate;

my $t = Test::Meshgate->new;

$t->run_backend(port => 8081, name => 'b1');
$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = (
    { name = "limits"; listen = "127.0.0.1:%%PORT_8000%%"; routes = "mesh";
      max_request_line = 256; max_header_size = 1024; max_headers = 5;
      max_body_size = 1000; },
    { name = "timeouts"; listen = "127.0.0.1:%%PORT_8001%%"; routes = "mesh";
      request_header_timeout = 1.0; idle_timeout = 1.0; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/"; cluster = "backend"; } ); };
clusters = ( { name = "backend"; response_timeout = 5.0;
               endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); } );
EOF
$t->run;

my $tport = port(8001);

# exchange($raw, port => P): sends |raw| on a new connection and reads
# until the server closes it or |timeout| (5 s) passes. Returns (bytes
# read, 1 if closed, seconds until closed).
sub exchange {
    my ($raw, %o) = @_;
    my $start = time;
    my $s = http($raw, start => 1, %o) or return ('', 0, 0);
    my ($buf, $closed) = read_until_close($s, $o{timeout} || 5);
    close $s;
    return ($buf, $closed, time - $start);
}

sub read_until_close {
    my ($s, $timeout) = @_;
    my $buf = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + $timeout;
    while ((my $left = $deadline - time) > 0) {
        next unless $sel->can_read($left);
        my $n = sysread($s, $buf, 65536, length $buf);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            return ($buf, 1);
        }
        return ($buf, 1) if $n == 0;
    }
    return ($buf, 0);
}

# rejected($name, $raw, $status): the request gets |status| and the
# connection is closed right after it.
sub rejected {
    my ($name, $raw, $status) = @_;
    my ($buf, $closed) = exchange($raw);
    my $r = parse_response($buf, eof => 0);
    is($r->{status}, $status, "$name gets $status")
        or diag(explain substr($buf, 0, 300));
    ok($closed && $r->{complete} && $r->{rest} eq '',
        "$name: the connection is closed after the $status");
}

sub accepted {
    my ($name, $raw, $re) = @_;
    my ($buf) = exchange($raw);
    my $r = parse_response($buf);
    is($r->{status}, 200, "$name is accepted")
        or diag(explain substr($buf, 0, 300));
    like($r->{body}, $re, "$name reaches the backend") if $re;
}

###########################################################################
# 414: max_request_line = 256

my $p = '/' . ('a' x 150);
accepted('a 170-byte request line',
    "GET $p HTTP/1.1\r\nHost: l.test\r\nConnection: close\r\n\r\n",
    qr{^b1 GET \Q$p\E$}m);
$p = '/' . ('a' x 300);
rejected('a 320-byte request line',
    "GET $p HTTP/1.1\r\nHost: l.test\r\n\r\n", 414);
{
    # The exact edge: 256 bytes without the CRLF pass, 257 do not.
    my $fill = 256 - length('GET / HTTP/1.1');
    my $line = 'GET /' . ('e' x $fill) . ' HTTP/1.1';
    accepted('a request line of exactly max_request_line bytes',
        "$line\r\nHost: l.test\r\nConnection: close\r\n\r\n");
    $line = 'GET /' . ('e' x ($fill + 1)) . ' HTTP/1.1';
    rejected('a request line one byte over max_request_line',
        "$line\r\nHost: l.test\r\n\r\n", 414);
}
rejected('a 2000-byte request line without its end',
    "GET /" . ('b' x 2000), 414);

###########################################################################
# 431: max_header_size = 1024, max_headers = 5

accepted('a 900-byte head',
    "GET /h HTTP/1.1\r\nHost: l.test\r\nX-Big: " . ('x' x 800)
    . "\r\nConnection: close\r\n\r\n", qr{^b1 GET /h$}m);
{
    # The exact edge: a head of 1024 bytes, blank line included, passes.
    my $pre = "GET /edge HTTP/1.1\r\nHost: l.test\r\nConnection: close\r\nX: ";
    my $head = $pre . ('x' x (1024 - length($pre) - 4)) . "\r\n\r\n";
    accepted('a head of exactly max_header_size bytes', $head);
    $head = $pre . ('x' x (1025 - length($pre) - 4)) . "\r\n\r\n";
    rejected('a head one byte over max_header_size', $head, 431);
}
rejected('a 1200-byte head',
    "GET /h HTTP/1.1\r\nHost: l.test\r\nX-Big: " . ('x' x 1150)
    . "\r\n\r\n", 431);
rejected('a 1200-byte head spread over many lines',
    "GET /h HTTP/1.1\r\nHost: l.test\r\nX-A: " . ('x' x 380)
    . "\r\nX-B: " . ('x' x 380) . "\r\nX-C: " . ('x' x 380) . "\r\n\r\n",
    431);
rejected('a 5000-byte head without its end',
    "GET /h HTTP/1.1\r\nHost: l.test\r\nX-Big: " . ('x' x 5000), 431);
accepted('5 header fields',
    "GET /n HTTP/1.1\r\nHost: l.test\r\nX-1: 1\r\nX-2: 2\r\nX-3: 3\r\n"
    . "Connection: close\r\n\r\n", qr{^b1 GET /n$}m);
rejected('6 header fields',
    "GET /n HTTP/1.1\r\nHost: l.test\r\nX-1: 1\r\nX-2: 2\r\nX-3: 3\r\n"
    . "X-4: 4\r\nX-5: 5\r\n\r\n", 431);

###########################################################################
# 413: max_body_size = 1000

{
    my $body = 'z' x 1000;
    my ($buf) = exchange("POST /upload HTTP/1.1\r\nHost: l.test\r\n"
        . "Content-Length: 1000\r\nConnection: close\r\n\r\n$body");
    like(parse_response($buf)->{body}, qr/^bytes=1000 /,
        'a 1000-byte body with Content-Length passes');
}
{
    # The 413 comes before any body byte is sent.
    my ($buf, $closed) = exchange("POST /upload HTTP/1.1\r\nHost: l.test\r\n"
        . "Content-Length: 1001\r\n\r\n");
    my $r = parse_response($buf, eof => 0);
    is($r->{status}, 413, 'Content-Length: 1001 gets 413 before the body');
    ok($closed, 'the connection is closed after the 413');
}
rejected('Content-Length: 10 GB', "POST /upload HTTP/1.1\r\nHost: l.test\r\n"
    . "Content-Length: 10000000000\r\n\r\n", 413);
{
    my $body = "190\r\n" . ('y' x 400) . "\r\n190\r\n" . ('y' x 400)
        . "\r\n0\r\n\r\n";
    my ($buf) = exchange("POST /upload HTTP/1.1\r\nHost: l.test\r\n"
        . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n$body");
    like(parse_response($buf)->{body}, qr/^bytes=800 /,
        'an 800-byte chunked body passes');
}
{
    # 600 bytes, then 600 more: the second chunk crosses the limit.
    my $s = http("POST /upload HTTP/1.1\r\nHost: l.test\r\n"
        . "Transfer-Encoding: chunked\r\n\r\n258\r\n" . ('y' x 600) . "\r\n",
        start => 1);
    sleep 0.2;
    http("258\r\n" . ('y' x 600) . "\r\n", socket => $s, start => 1,
        quiet => 1);
    my ($buf, $closed) = read_until_close($s, 5);
    close $s;
    my $r = parse_response($buf, eof => 0);
    is($r->{status}, 413, 'a chunked body growing past 1000 bytes gets 413')
        or diag(explain substr($buf, 0, 300));
    ok($closed, 'the connection is closed after the streamed 413');
}
rejected('one chunk bigger than the limit', "POST /upload HTTP/1.1\r\n"
    . "Host: l.test\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n"
    . ('y' x 4096) . "\r\n0\r\n\r\n", 413);

###########################################################################
# 505 and 501

rejected('HTTP/2.0 in the request line',
    "GET / HTTP/2.0\r\nHost: l.test\r\n\r\n", 505);
rejected('HTTP/9.9 in the request line',
    "GET / HTTP/9.9\r\nHost: l.test\r\n\r\n", 505);
rejected('Transfer-Encoding: gzip, chunked',
    "POST /upload HTTP/1.1\r\nHost: l.test\r\n"
    . "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501);
# Without chunked last the body length is unknown: 400 (RFC 9112 6.3).
rejected('Transfer-Encoding: x-custom alone',
    "POST /upload HTTP/1.1\r\nHost: l.test\r\n"
    . "Transfer-Encoding: x-custom\r\n\r\nabc", 400);

# Other malformed requests: 400 and close.
for my $case (
    [ 'two spaces in the request line', "GET  /x HTTP/1.1\r\nHost: a\r\n" ],
    [ 'a lower-case version', "GET /x http/1.1\r\nHost: a\r\n" ],
    [ 'no version', "GET /x\r\nHost: a\r\n" ],
    [ 'a control byte in the target', "GET /a\x01b HTTP/1.1\r\nHost: a\r\n" ],
    [ 'DEL in a header value', "GET /x HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n" ],
    [ 'an empty header name', "GET /x HTTP/1.1\r\nHost: a\r\n: b\r\n" ],
    [ 'a header line without a colon', "GET /x HTTP/1.1\r\nHost: a\r\nXYZ\r\n" ],
    [ 'a bad character in a header name',
      "GET /x HTTP/1.1\r\nHost: a\r\nX(A): b\r\n" ],
    [ 'a Host with a space', "GET /x HTTP/1.1\r\nHost: a b\r\n" ],
    [ 'an empty Content-Length',
      "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n" ],
    [ 'Transfer-Encoding on HTTP/1.0',
      "POST /x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n" ],
    [ 'Transfer-Encoding: chunked twice', "POST /x HTTP/1.1\r\nHost: a\r\n"
      . "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n" ],
    [ 'an absolute-form HTTP/1.1 request without Host',
      "GET http://a/x HTTP/1.1\r\nX: y\r\n" ])
{
    my ($name, $head) = @$case;
    rejected($name, "$head\r\n", 400);
}

###########################################################################
# Pipelining and keep-alive

{
    my $c = Test::Meshgate::Client->new(port => port(8000));
    $c->send(join '', map { "GET /pipe-$_ HTTP/1.1\r\nHost: l.test\r\n\r\n" }
        1 .. 3);
    my @got;
    for (1 .. 3) {
        my $r = $c->read_response or last;
        push @got, $r->{body};
    }
    is_deeply(\@got, [ map { "b1 GET /pipe-$_\n" } 1 .. 3 ],
        '3 pipelined requests in one write get 3 responses in order')
        or diag($c->error);

    my $r = $c->get('/after-pipe', host => 'l.test');
    is($r && $r->{body}, "b1 GET /after-pipe\n",
        'the connection serves a 4th request after the pipeline');
    ok($c->is_open, 'the keep-alive connection stays open');
    $r = $c->get('/last', host => 'l.test', close => 1);
    is($r && $r->{status}, 200, 'Connection: close is answered');
    like($r && $r->{headers}{connection} || '', qr/close/i,
        'the answer says Connection: close');
    ok($c->wait_closed(3), 'then the connection is closed');
    $c->close;
}
{
    # A POST with a body, then a GET, in one write.
    my $c = Test::Meshgate::Client->new(port => port(8000));
    $c->send("POST /echo HTTP/1.1\r\nHost: l.test\r\nContent-Length: 5\r\n"
        . "\r\nhelloGET /pipe-get HTTP/1.1\r\nHost: l.test\r\n\r\n");
    my $r1 = $c->read_response;
    my $r2 = $c->read_response;
    like($r1 && $r1->{body}, qr/\r\n\r\nhello\z/,
        'a pipelined POST gets its body through');
    is($r2 && $r2->{body}, "b1 GET /pipe-get\n",
        'the GET behind the POST body is answered');
    $c->close;
}
{
    my ($buf, $closed) = exchange("GET /v10 HTTP/1.0\r\nHost: l.test\r\n\r\n");
    my $r = parse_response($buf);
    is($r->{status}, 200, 'HTTP/1.0 without keep-alive is answered');
    is($r->{body}, "b1 GET /v10\n", 'with its body');
    ok($closed, 'HTTP/1.0 without keep-alive closes the connection');
}
{
    my $c = Test::Meshgate::Client->new(port => port(8000));
    my $r = $c->request("GET /v10ka HTTP/1.0\r\nHost: l.test\r\n"
        . "Connection: keep-alive\r\n\r\n");
    is($r && $r->{status}, 200, 'HTTP/1.0 with keep-alive is answered');
    like($r && $r->{headers}{connection} || '', qr/keep-alive/i,
        'with Connection: keep-alive');
    $r = $c->request("GET /v10ka2 HTTP/1.0\r\nHost: l.test\r\n"
        . "Connection: keep-alive\r\n\r\n");
    is($r && $r->{body}, "b1 GET /v10ka2\n",
        'and the connection serves another HTTP/1.0 request');
    $c->close;
}

###########################################################################
# Expect: 100-continue

{
    my $s = http("POST /echo HTTP/1.1\r\nHost: l.test\r\nContent-Length: 5\r\n"
        . "Expect: 100-continue\r\n\r\n", start => 1);
    my $buf = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + 5;
    while (time < $deadline && $buf !~ /\r\n\r\n/) {
        next unless $sel->can_read($deadline - time);
        my $n = sysread($s, $buf, 4096, length $buf);
        last if !$n && !($! == EAGAIN || $! == EINTR);
    }
    like($buf, qr{^HTTP/1\.1 100 Continue\r\n\r\n},
        'Expect: 100-continue gets an interim 100 before the body is sent');
    http("hello", socket => $s, start => 1);
    my $c = bless { s => $s, buf => $buf, timeout => 5, eof => 0 },
        'Test::Meshgate::Client';
    my $r = $c->read_response;
    is($r && $r->{status}, 200, 'then the final response');
    like($r && $r->{body}, qr/\r\n\r\nhello\z/, 'which saw the body');
    close $s;
}
{
    my ($buf, $closed) = exchange("POST /upload HTTP/1.1\r\nHost: l.test\r\n"
        . "Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
    my $r = parse_response($buf, eof => 0);
    is($r->{status}, 413, 'Expect with a body over the limit gets 413');
    is(scalar @{$r->{interim}}, 0, 'and no 100 Continue');
}

###########################################################################
# Timeouts (listener "timeouts": 1 s each)

{
    my ($buf, $closed, $took) = exchange(
        "GET /slow HTTP/1.1\r\nHost: l.test\r\n", port => $tport);
    my $r = parse_response($buf, eof => 0);
    is($r->{status}, 408, 'an unfinished head gets 408');
    ok($closed, 'and the connection is closed');
    ok($took >= 0.8 && $took < 4,
        'after about request_header_timeout') or diag("took $took s");
}
{
    # A byte every 200 ms does not extend the timeout.
    my $s = http("G", port => $tport, start => 1);
    my $start = time;
    my $closed = 0;
    my $buf = '';
    for my $ch (split //, "ET /trickle HTTP/1.1\r\nHost: l.test\r\nX: y") {
        last if time - $start > 4;
        sleep 0.2;
        my ($b, $c) = read_until_close($s, 0.01);
        $buf .= $b;
        if ($c) { $closed = 1; last }
        last unless defined syswrite($s, $ch);
    }
    unless ($closed) {
        my ($b, $c) = read_until_close($s, 3);
        $buf .= $b;
        $closed = $c;
    }
    my $took = time - $start;
    close $s;
    is(parse_response($buf, eof => 0)->{status}, 408,
        'a head sent one byte at a time gets 408');
    ok($closed && $took < 3, 'within the timeout, not per byte')
        or diag("took $took s");
}
{
    my $c = Test::Meshgate::Client->new(port => $tport);
    my $r = $c->get('/idle', host => 'l.test');
    is($r && $r->{status}, 200, 'a keep-alive request on the timeout listener');
    my $start = time;
    sleep 0.3;
    ok($c->is_open, 'the idle connection is open at first');
    ok($c->wait_closed(4), 'the idle connection is closed after idle_timeout');
    my $took = time - $start;
    ok($took >= 0.5 && $took < 4, 'after about 1 s') or diag("took $took s");
    is($c->{buf}, '', 'silently: no 408 or other bytes');
    $c->close;
}
{
    # The idle timer gives way to the request header timer, and a request
    # that completes in time is served.
    my $c = Test::Meshgate::Client->new(port => $tport);
    $c->send("GET /split HTTP/1.1\r\n");
    sleep 0.5;
    my $r = $c->request("Host: l.test\r\n\r\n");
    is($r && $r->{body}, "b1 GET /split\n",
        'a head sent in two parts within the timeout is served');
    $c->close;
}

$t->stop_and_check;
done_testing();
