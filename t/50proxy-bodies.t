#!/usr/bin/perl

# Bodies through the proxy: Content-Length, chunked and close-delimited
# responses, HTTP/1.0 clients, HEAD/204/304 without a body, uploads with
# Content-Length and chunked, and bounded worker memory for a 1 GiB upload
# and download and for a client that stops reading.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Digest::SHA qw(sha1_hex);
use Errno qw(EINTR EAGAIN EWOULDBLOCK);
use IO::Select;
use Test::More;
use Time::HiRes qw(time sleep);
use Test::Meshgate;

my $t = Test::Meshgate->new;

$t->run_backend(port => 8081, name => 'b1');
$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/"; cluster = "backend"; } ); };
clusters = ( { name = "backend"; response_timeout = 30.0;
               endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); } );
EOF
$t->run;
my $port = port(8000);

sub get {
    my ($path, %o) = @_;
    my $raw = http_get($path, host => 'b.test', timeout => 10, %o);
    my $r = parse_response($raw, head => ($o{method} // '') eq 'HEAD');
    $r->{raw} = $raw;
    return $r;
}

# Responses
for my $n (0, 1, 1000, 65536, 300_000) {
    my $r = get("/bytes/$n");
    is($r->{headers}{'content-length'}, $n,
        "/bytes/$n keeps Content-Length: $n");
    ok($r->{complete} && $r->{body} eq pattern_bytes($n),
        "/bytes/$n arrives intact") or diag(length $r->{body});
}
for my $n (1, 5000, 300_000) {
    my $r = get("/chunked/$n");
    is(lc($r->{headers}{'transfer-encoding'} // ''), 'chunked',
        "/chunked/$n stays chunked for an HTTP/1.1 client");
    ok($r->{complete} && $r->{body} eq pattern_bytes($n),
        "/chunked/$n arrives intact") or diag(length $r->{body});
}
{
    my $r = get('/close/200000');
    ok($r->{body} eq pattern_bytes(200000),
        'a close-delimited response arrives intact')
        or diag(length $r->{body});
    my $c = Test::Meshgate::Client->new(port => $port);
    my $r1 = $c->get('/close/70000', host => 'b.test');
    ok($r1 && $r1->{body} eq pattern_bytes(70000),
        'a close-delimited response on a keep-alive client connection');
    ok(!$r1 || !$r1->{close_delimited} || $c->wait_closed(3),
        'either framed for the client or ended by a close');
    $c->close;
}
{
    my $r = get('/chunked/100000', version => '1.0');
    is($r->{status}, 200, 'an HTTP/1.0 client gets a chunked response');
    ok(!defined $r->{headers}{'transfer-encoding'},
        'without Transfer-Encoding');
    ok($r->{body} eq pattern_bytes(100000), 'de-chunked and intact')
        or diag(substr($r->{body}, 0, 40));
    like($r->{status_line}, qr{^HTTP/1\.[01] 200}, 'with an HTTP/1.x status');

    my $c = Test::Meshgate::Client->new(port => $port, timeout => 10);
    $r = $c->request("GET /chunked/70000 HTTP/1.0\r\nHost: b.test\r\n\r\n");
    ok($r && $r->{body} eq pattern_bytes(70000)
        && !defined $r->{headers}{'content-length'} && $c->wait_closed(0),
        'the de-chunked body is delimited by the close');
    $c->close;
}

# Pipelined requests with bodies of every framing come back in order.
{
    my $c = Test::Meshgate::Client->new(port => $port, timeout => 10);
    $c->send(join '', map { "GET $_ HTTP/1.1\r\nHost: b.test\r\n\r\n" }
        '/bytes/300000', '/chunked/200000', '/status/204', '/bytes/0',
        '/chunked/1', '/last');
    my @got;
    for (1 .. 6) {
        my $r = $c->read_response or last;
        push @got, $r->{status} . ':' . ($r->{body} eq '' ? ''
            : $r->{body} =~ /^b1 / ? $r->{body} : length $r->{body});
    }
    is("@got", "200:300000 200:200000 204: 200: 200:1 200:b1 GET /last\n",
        'six pipelined requests get their bodies in order')
        or diag($c->error);
    $c->close;
}

# No body: HEAD, 204, 304. The next response on the connection shows that
# nothing was left over.
{
    my $c = Test::Meshgate::Client->new(port => $port);
    my $r = $c->get('/bytes/5000', host => 'b.test', method => 'HEAD');
    is($r && $r->{headers}{'content-length'}, 5000,
        'HEAD gets the Content-Length of the GET');
    $r = $c->get('/chunked/5000', host => 'b.test', method => 'HEAD');
    is($r && $r->{status}, 200, 'HEAD of a chunked resource');
    $r = $c->get('/status/204', host => 'b.test');
    is($r && $r->{status}, 204, 'a 204');
    $r = $c->get('/status/304', host => 'b.test');
    is($r && $r->{status}, 304, 'a 304');
    $r = $c->get('/head-check', host => 'b.test', method => 'HEAD');
    is($r && $r->{status}, 200, 'HEAD /head-check');
    $r = $c->get('/after', host => 'b.test');
    is($r && $r->{body}, "b1 GET /after\n",
        'none of them sent body bytes (the next response is clean)');
    $c->close;
}

# Uploads
{
    my $body = pattern_bytes(500_000);
    my $r = parse_response(http("POST /upload HTTP/1.1\r\nHost: b.test\r\n"
        . "Content-Length: 500000\r\nConnection: close\r\n\r\n$body",
        timeout => 10));
    is($r->{body}, 'bytes=500000 sha1=' . sha1_hex($body),
        'a 500 kB upload with Content-Length arrives intact');

    my $chunked = '';
    my $off = 0;
    for my $sz (1, 7, 4096, 100_000, 1, 295_895) {
        $chunked .= sprintf("%x;ext=1\r\n", $sz) . substr($body, $off, $sz)
            . "\r\n";
        $off += $sz;
    }
    $chunked .= "0\r\nX-Trailer: t\r\n\r\n";
    $r = parse_response(http("POST /upload HTTP/1.1\r\nHost: b.test\r\n"
        . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n$chunked",
        timeout => 10));
    is($r->{body}, "bytes=$off sha1=" . sha1_hex(substr($body, 0, $off)),
        'a chunked upload with odd chunk sizes, extensions and a trailer '
        . 'arrives intact');

    $r = parse_response(http("POST /echo HTTP/1.1\r\nHost: b.test\r\n"
        . "Content-Length: 11\r\nConnection: close\r\n\r\nhello world",
        timeout => 10));
    like($r->{body}, qr/\r\n\r\nhello world\z/, 'a small body is echoed');
}

# A client that does not read: the worker does not buffer the response.
{
    my $n = 200 * 1024 * 1024;
    my $s = http("GET /bytes/$n HTTP/1.1\r\nHost: b.test\r\n"
        . "Connection: close\r\n\r\n", start => 1);
    # Give the backend time to fill every buffer on the way.
    sleep 1.5;
    my $rss = max_worker_kb('VmRSS');
    cmp_ok($rss, '<', 64 * 1024,
        'a worker holds under 64 MiB while its client does not read')
        or diag("VmRSS $rss kB");
    my $got = 0;
    my $head = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + 20;
    while (time < $deadline) {
        next unless $sel->can_read($deadline - time);
        my $buf;
        my $r = sysread($s, $buf, 1 << 20);
        if (!defined $r) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            last;
        }
        last if $r == 0;
        if ($head !~ /\r\n\r\n/) {
            $head .= $buf;
            if ($head =~ /\r\n\r\n/) {
                $got = length($head) - index($head, "\r\n\r\n") - 4;
            }
        } else {
            $got += $r;
        }
    }
    close $s;
    is($got, $n, 'then the whole 200 MiB body arrives');
}

# 1 GiB each way with curl; workers stay under 64 MiB.
SKIP: {
    skip 'curl is not installed', 5 unless -x '/usr/bin/curl';
    my $gib = 1024 * 1024 * 1024;
    my $zero_sha1 = `head -c $gib /dev/zero | sha1sum`;
    $zero_sha1 =~ s/\s.*//s;

    my $start = time;
    my $out = `head -c $gib /dev/zero | curl -sS --max-time 40 -T - -H 'Host: b.test' -H 'Expect:' http://127.0.0.1:$port/upload 2>&1`;
    is($out, "bytes=$gib sha1=$zero_sha1",
        'a 1 GiB chunked upload (curl -T -) arrives whole');
    diag(sprintf 'upload took %.1f s', time - $start)
        if $ENV{TEST_MESHGATE_VERBOSE};

    $start = time;
    $out = `curl -sS --max-time 40 -o /dev/null -w '%{http_code} %{size_download}' -H 'Host: b.test' http://127.0.0.1:$port/bytes/$gib 2>&1`;
    is($out, "200 $gib", 'a 1 GiB download arrives whole');
    diag(sprintf 'download took %.1f s', time - $start)
        if $ENV{TEST_MESHGATE_VERBOSE};

    $out = `curl -sS --max-time 40 -o /dev/null -w '%{http_code} %{size_download}' -H 'Host: b.test' http://127.0.0.1:$port/chunked/268435456 2>&1`;
    is($out, '200 268435456', 'a 256 MiB chunked download arrives whole');

    my $hwm = max_worker_kb('VmHWM');
    cmp_ok($hwm, '<', 64 * 1024, 'every worker peaked under 64 MiB RSS')
        or diag("VmHWM $hwm kB");
    cmp_ok($hwm, '>', 0, 'the peak was measured');
    note("worker VmHWM $hwm kB");
}

$t->stop_and_check;
done_testing();

# The largest |field| (kB) in /proc/PID/status over the workers.
sub max_worker_kb {
    my ($field) = @_;
    my $max = 0;
    for my $pid ($t->worker_pids) {
        my $s = read_file("/proc/$pid/status");
        $max = $1 if $s =~ /^$field:\s+(\d+) kB/m && $1 > $max;
    }
    return $max;
}
