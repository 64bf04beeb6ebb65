#!/usr/bin/perl

# Upstream HTTP/2 in cleartext (cluster protocol = "h2c") against
# t/backend/h2-backend.py, from HTTP/1.1 and HTTP/2 clients: the request
# the upstream sees (pseudo-headers, no connection-specific fields,
# X-Forwarded-For, Via, cookies, te: trailers), bodies both ways (10 MB,
# chunked requests de-chunked), response trailers to both client kinds,
# responses without content-length to HTTP/1.1 clients, multiplexing on a
# few long-lived connections, the peer's MAX_CONCURRENT_STREAMS, GOAWAY
# without failed requests, PING keepalive, upstream status codes, resets
# and dropped connections, a dead endpoint and the access log.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Digest::SHA qw(sha1_hex);
use JSON::PP ();
use List::Util qw(max);
use POSIX ();
use Test::More;
use Time::HiRes qw(time sleep);
use Test::Meshgate;

for my $tool (qw(curl nghttp h2load)) {
    plan(skip_all => "$tool is not installed")
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}
plan(skip_all => 'curl has no HTTP/2')
    unless `curl --version` =~ /\bHTTP2\b/;
plan(skip_all => 'no python3 with the h2 package')
    unless Test::Meshgate::h2_python();

my $t = Test::Meshgate->new;

$t->run_h2_backend(port => 8081, h2c => 1, name => 'up');
$t->run_h2_backend(port => 8082, h2c => 1, name => 'ms', max_streams => 2);
$t->run_h2_backend(port => 8083, h2c => 1, name => 'ga', goaway_after => 5);
$t->run_h2_backend(port => 8084, h2c => 1, name => 'ka');
$t->run_h2_backend(port => 8085, h2c => 1, name => 'deaf',
    no_ping_ack => 1);

$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = (
    { name = "h1"; listen = "127.0.0.1:%%PORT_8000%%"; routes = "mesh";
      access_log = "%%TESTDIR%%/access-h1.log"; },
    { name = "h2c"; listen = "127.0.0.1:%%PORT_8001%%"; h2c = true;
      routes = "mesh"; access_log = "%%TESTDIR%%/access-h2.log"; } );
routes = { mesh = (
    { domains = [ "up.test" ]; prefix = "/"; cluster = "up"; },
    { domains = [ "ms.test" ]; prefix = "/"; cluster = "ms"; },
    { domains = [ "ga.test" ]; prefix = "/"; cluster = "ga"; },
    { domains = [ "ka.test" ]; prefix = "/"; cluster = "ka"; },
    { domains = [ "deaf.test" ]; prefix = "/"; cluster = "deaf"; },
    { domains = [ "dead.test" ]; prefix = "/"; cluster = "dead"; } ); };
clusters = (
    { name = "up"; protocol = "h2c"; response_timeout = 30.0;
      keepalive_interval = 0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); },
    { name = "ms"; protocol = "h2c"; response_timeout = 30.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } ); },
    { name = "ga"; protocol = "h2c"; response_timeout = 30.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8083%%"; } ); },
    { name = "ka"; protocol = "h2c"; keepalive_interval = 1;
      keepalive_timeout = 2;
      endpoints = ( { address = "127.0.0.1:%%PORT_8084%%"; } ); },
    { name = "deaf"; protocol = "h2c"; keepalive_interval = 1;
      keepalive_timeout = 1;
      endpoints = ( { address = "127.0.0.1:%%PORT_8085%%"; } ); },
    { name = "dead"; protocol = "h2c"; connect_timeout = 2.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8089%%"; } ); } );
EOF
$t->run;

my $h1port = port(8000);
my $h1base = "http://127.0.0.1:$h1port";
my $h2base = 'http://127.0.0.1:' . port(8001);
my $dir = $t->testdir;
my $ncmd = 0;

# cmd(@argv): runs a client with a 90 s bound; returns its stdout (stderr
# goes to a file whose text is in $LAST_ERR).
our $LAST_ERR = '';
sub cmd {
    my @argv = @_;
    my $err = "$dir/cmd-" . ++$ncmd . '.err';
    my $pid = open(my $fh, '-|') // die "fork: $!\n";
    if ($pid == 0) {
        open STDERR, '>', $err or POSIX::_exit(127);
        { no warnings 'exec'; exec 'timeout', '90', @argv; }
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh>;
    close $fh;
    $LAST_ERR = read_file($err);
    return $out // '';
}

# curl($kind, $path, host => H, args => [...], file => F): a request from
# curl --http1.1 ($kind 'h1', to the HTTP/1.1 listener) or curl
# --http2-prior-knowledge ('h2', to the h2c listener). Returns { status,
# version, headers (lc name => value), body (unless |file|), json (the
# decoded body when it is the backend's echo) }.
sub curl {
    my ($kind, $path, %o) = @_;
    my $n = ++$ncmd;
    my $body = $o{file} // "$dir/curl-$n.body";
    my $hdr = "$dir/curl-$n.head";
    my $w = cmd('curl', '-sS', $kind eq 'h2' ? '--http2-prior-knowledge'
        : '--http1.1', '--max-time', '60', '-o', $body, '-D', $hdr,
        '-w', '%{http_version} %{http_code}',
        '-H', 'Host: ' . ($o{host} // 'up.test'), @{$o{args} || []},
        ($kind eq 'h2' ? $h2base : $h1base) . $path);
    my $r = { w => $w, err => $LAST_ERR, headers => {} };
    ($r->{version}, $r->{status}) = split / /, $w;
    $r->{status} //= '';
    for my $l (split /\r?\n/, read_file($hdr)) {
        $r->{headers}{lc $1} = $2 if $l =~ /^([^:\s]+):\s*(.*?)\s*$/;
    }
    unless ($o{file}) {
        $r->{body} = read_file($body);
        $r->{json} = eval { JSON::PP::decode_json($r->{body}) }
            if ($r->{headers}{'content-type'} // '') eq 'application/json';
        unlink $body;
    }
    return $r;
}

# The values of field |name| in the request the backend got (from its
# echo or its log), in order.
sub up_fields {
    my ($echo, $name) = @_;
    return map { $_->[1] } grep { $_->[0] eq $name }
        @{($echo // {})->{headers} || []};
}

sub up_names {
    my ($echo) = @_;
    return map { $_->[0] } @{($echo // {})->{headers} || []};
}

# nghttp -v: the response fields before the first DATA frame, the fields
# of a HEADERS frame after DATA (trailers), whether that frame ended the
# stream, and the body bytes.
sub nghttp_trailers {
    my @args = @_;
    my $out = cmd('nghttp', '-v', '-t', '30', @args);
    my %r = (raw => $out, headers => {}, trailers => {}, data => 0);
    my $after_data = 0;
    for my $l (split /\n/, $out) {
        if ($l =~ /recv DATA frame <length=(\d+)/) {
            $after_data = 1;
            $r{data} += $1;
        } elsif ($l =~ /recv \(stream_id=\d+\) ([^:\s][^:]*|:[a-z]+): (.*)$/) {
            $r{$after_data ? 'trailers' : 'headers'}{$1} = $2;
        } elsif ($after_data
            && $l =~ /recv HEADERS frame <[^>]*flags=0x0?5[,>]/) {
            $r{trailers_end_stream} = 1;
        }
    }
    return \%r;
}

my $ws = qr/^(?:connection|keep-alive|proxy-connection|transfer-encoding|upgrade|x-hop)$/;

# 1. A GET from an HTTP/1.1 client: what the upstream sees.
{
    my $r = curl('h1', '/get?a=1&b=%2F', args => [
        '-H', 'Connection: keep-alive, X-Hop', '-H', 'Keep-Alive: timeout=5',
        '-H', 'X-Hop: 1', '-H', 'Proxy-Connection: keep-alive',
        '-H', 'X-Custom: one', '-H', 'X-Custom: two' ]);
    is($r->{status}, 200, 'HTTP/1.1 client, h2c upstream: 200')
        or diag("$r->{err} $r->{body}");
    my $u = $r->{json};
    ok($u, 'the body is the backend\'s echo') or diag($r->{body});
    is_deeply([ up_fields($u, ':method') ], [ 'GET' ], ':method GET');
    is_deeply([ up_fields($u, ':path') ], [ '/get?a=1&b=%2F' ],
        ':path is the path with its query, as sent');
    is_deeply([ up_fields($u, ':authority') ], [ 'up.test' ],
        ':authority comes from Host');
    is_deeply([ up_fields($u, ':scheme') ], [ 'http' ],
        ':scheme http to a cleartext upstream');
    my @hop = grep { /$ws/ } up_names($u);
    is_deeply(\@hop, [], 'no connection-specific field goes upstream '
        . '(nor one that Connection names)');
    my ($ev) = $t->h2_events(8081, ev => 'stream', path => '/get?a=1&b=%2F');
    is_deeply($ev ? $ev->{violations} : ['not logged'], [],
        'the backend found nothing RFC 9113 forbids in the request');
    ok(!grep({ /[A-Z]/ } up_names($u)), 'field names are lowercase');
    my @pseudo_pos = grep { (up_names($u))[$_] =~ /^:/ }
        0 .. scalar(up_names($u)) - 1;
    is(join(',', @pseudo_pos), '0,1,2,3', 'four pseudo-headers, first');
    is_deeply([ up_fields($u, 'x-forwarded-for') ], [ '127.0.0.1' ],
        'x-forwarded-for names the client');
    my @via = up_fields($u, 'via');
    is(scalar @via, 1, 'one via');
    like($via[0] // '', qr{^(?:HTTP/)?1\.1 meshgate$},
        'via: 1.1 meshgate (the protocol received)');
    is(join(',', up_fields($u, 'x-custom')), 'one,two',
        'repeated fields stay, in order');
    is($r->{headers}{'x-backend'}, 'up', 'response fields come back');
    is($r->{headers}{'content-type'}, 'application/json',
        'with the content type');
}

# 2. The same from an HTTP/2 client.
{
    my $r = curl('h2', '/get-h2?x=%20y', args => [ '-H', 'X-Custom: 2' ]);
    is($r->{version}, '2', 'curl speaks HTTP/2 to the h2c listener');
    is($r->{status}, 200, 'HTTP/2 client, h2c upstream: 200')
        or diag("$r->{err} $r->{body}");
    my $u = $r->{json};
    is_deeply([ up_fields($u, ':path') ], [ '/get-h2?x=%20y' ], ':path');
    is_deeply([ up_fields($u, ':authority') ], [ 'up.test' ],
        ':authority passes');
    is_deeply([ up_fields($u, 'x-custom') ], [ '2' ], 'fields pass');
    like((up_fields($u, 'via'))[0] // '', qr{^(?:HTTP/)?2(?:\.0)? meshgate$},
        'via names HTTP/2 as the protocol received');
    ok(!exists $r->{headers}{connection}, 'no connection field comes back');
    my ($ev) = $t->h2_events(8081, ev => 'stream', path => '/get-h2?x=%20y');
    is_deeply($ev ? $ev->{violations} : ['not logged'], [],
        'the request is valid HTTP/2');
}

# 3. Cookies and TE.
{
    my $r = curl('h1', '/cookie', args => [ '-H', 'Cookie: a=1; b=2' ]);
    # RFC 9113 §8.2.3: one field or one per crumb; joined they are equal.
    is(join('; ', up_fields($r->{json}, 'cookie')), 'a=1; b=2',
        'an HTTP/1.1 cookie reaches the upstream');
    my $out = cmd('nghttp', '-t', '10', '-H', ':authority: up.test',
        '-H', 'cookie: a=1', '-H', 'cookie: b=2', "$h2base/cookie2");
    my $u = eval { JSON::PP::decode_json($out) };
    is(join('; ', up_fields($u, 'cookie')), 'a=1; b=2',
        'HTTP/2 cookie crumbs reach the upstream') or diag($out . $LAST_ERR);

    my $raw = http("GET /te1 HTTP/1.1\r\nHost: up.test\r\nTE: trailers\r\n"
        . "Connection: TE, close\r\n\r\n", port => $h1port, timeout => 10);
    my $p = parse_response($raw);
    $u = eval { JSON::PP::decode_json($p->{body}) };
    is_deeply([ up_fields($u, 'te') ], [ 'trailers' ],
        'TE: trailers from an HTTP/1.1 client goes upstream as te: trailers');
    $raw = http("GET /te2 HTTP/1.1\r\nHost: up.test\r\nTE: gzip\r\n"
        . "Connection: close\r\n\r\n", port => $h1port, timeout => 10);
    $u = eval { JSON::PP::decode_json(parse_response($raw)->{body}) };
    ok($u && !grep({ $_ eq 'te' } up_names($u)),
        'TE: gzip is not forwarded (only "trailers" may go in HTTP/2)')
        or diag($raw);
    $out = cmd('nghttp', '-t', '10', '-H', ':authority: up.test',
        '-H', 'te: trailers', "$h2base/te3");
    $u = eval { JSON::PP::decode_json($out) };
    is_deeply([ up_fields($u, 'te') ], [ 'trailers' ],
        'te: trailers from an HTTP/2 client passes');
}

# 4. Request and response bodies.
{
    my $r = curl('h1', '/post-cl', args => [ '--data-binary', 'hello' ]);
    my $u = $r->{json};
    is($u->{body_len}, 5, 'a POST with content-length: the body arrives');
    is($u->{body_sha1}, sha1_hex('hello'), 'intact');
    is_deeply([ up_fields($u, ':method') ], [ 'POST' ], ':method POST');
    is_deeply([ up_fields($u, 'content-length') ], [ 5 ],
        'content-length passes');

    my $n = 100_003;
    my $file = "$dir/small.bin";
    open my $fh, '>', $file or die;
    print $fh pattern_bytes($n);
    close $fh;
    $r = curl('h1', '/post-chunked', args => [ '-H',
        'Transfer-Encoding: chunked', '--data-binary', "\@$file" ]);
    $u = $r->{json};
    is($u->{body_len}, $n, 'a chunked HTTP/1.1 request body arrives de-chunked')
        or diag("$r->{status} $r->{err}");
    is($u->{body_sha1}, sha1_hex(pattern_bytes($n)), 'intact');
    ok($u && !grep({ $_ eq 'transfer-encoding' } up_names($u)),
        'without transfer-encoding');

    # 10 MB up, from both client kinds, random bytes so a misplaced block
    # would show.
    my $big = 10 * 1000 * 1000;
    my $up = "$dir/up.bin";
    system("head -c $big /dev/urandom > $up") == 0 or die "head: $?\n";
    my $sha = Digest::SHA->new(1)->addfile($up)->hexdigest;
    for my $kind (qw(h1 h2)) {
        $r = curl($kind, "/upload-$kind",
            args => [ '--data-binary', "\@$up" ]);
        is($r->{status}, 200, "10 MB upload from an $kind client: 200")
            or diag($r->{err});
        is($r->{json}{body_len}, $big, "all of it reaches the upstream ($kind)");
        is($r->{json}{body_sha1}, $sha, "intact ($kind)");
    }
    # An HTTP/2 client without a length (curl -T -): DATA until END_STREAM.
    my $out = cmd('sh', '-c', "curl -sS --http2-prior-knowledge --max-time 60"
        . " -X POST -T - -H 'Host: up.test' $h2base/upload-h2-nolen < $up");
    $u = eval { JSON::PP::decode_json($out) };
    is($u && "$u->{body_len} $u->{body_sha1}", "$big $sha",
        '10 MB from an HTTP/2 client without content-length, intact')
        or diag($LAST_ERR);

    # 10 MB down, with and without content-length, to both client kinds.
    my $want = sha1_hex(pattern_bytes($big));
    my $f = "$dir/down.bin";
    for my $kind (qw(h1 h2)) {
        for my $nolen (0, 1) {
            my $what = "$kind client, " . ($nolen ? 'no content-length'
                : 'content-length');
            unlink $f;
            $r = curl($kind, "/down?size=$big" . ($nolen ? '&nolength=1' : ''),
                file => $f);
            is($r->{status}, 200, "10 MB download ($what): 200")
                or diag($r->{err});
            is(-s $f, $big, "all of it ($what)");
            is(Digest::SHA->new(1)->addfile($f)->hexdigest, $want,
                "intact ($what)");
            if ($kind eq 'h1') {
                if ($nolen) {
                    is(lc($r->{headers}{'transfer-encoding'} // ''), 'chunked',
                        'without content-length an HTTP/1.1 client gets it '
                        . 'chunked');
                } else {
                    is($r->{headers}{'content-length'}, $big,
                        'the content-length passes');
                }
            }
        }
    }
    unlink $f, $up;
}

# 5. Response trailers.
{
    my $n = 1000;
    my $sha = sha1_hex(pattern_bytes($n));
    for my $nolen (0, 1) {
        my $q = "trailers=1&size=$n" . ($nolen ? '&nolength=1' : '');
        my $r = nghttp_trailers('-H', ':authority: up.test',
            '-H', 'te: trailers', "$h2base/tr?$q");
        my $what = $nolen ? 'without content-length' : 'with content-length';
        is($r->{headers}{':status'}, 200, "trailers ($what): 200")
            or diag($r->{raw} . $LAST_ERR);
        is($r->{data}, $n, "the body ($what)");
        is($r->{trailers}{'x-checksum'}, $sha,
            "an HTTP/2 client gets the x-checksum trailer ($what)");
        is($r->{trailers}{'grpc-status'}, '0', "and grpc-status ($what)");
        ok($r->{trailers_end_stream},
            "in a HEADERS frame after DATA that ends the stream ($what)");
    }

    my $raw = http("GET /tr?trailers=1&size=$n&nolength=1 HTTP/1.1\r\n"
        . "Host: up.test\r\nTE: trailers\r\nConnection: close\r\n\r\n",
        port => $h1port, timeout => 10);
    my $p = parse_response($raw);
    is($p->{status}, 200, 'trailers to an HTTP/1.1 client: 200');
    ok($p->{chunked} && $p->{complete}, 'chunked, complete');
    is($p->{body}, pattern_bytes($n), 'the body');
    like($raw, qr/\r\n0\r\n(?:[^\r\n]+\r\n)*x-checksum: \Q$sha\E\r\n/i,
        'the last chunk carries the x-checksum trailer');
    ok(grep({ /^grpc-status:\s*0\s*$/i } @{$p->{trailers} || []}),
        'and grpc-status') or diag($raw);
}

# 6. No content-length to an HTTP/1.1 client: chunked, keep-alive.
{
    my $c = Test::Meshgate::Client->new(port => $h1port, timeout => 10);
    my $r = $c->get('/nl?size=5000&nolength=1', host => 'up.test');
    is($r && $r->{status}, 200, 'a response without content-length: 200');
    ok($r && $r->{chunked}, 'reaches an HTTP/1.1 client chunked');
    is($r && $r->{body}, pattern_bytes(5000), 'whole');
    ok($r && !exists $r->{headers}{'content-length'}, 'no content-length');
    $r = $c->get('/nl2?nolength=1', host => 'up.test');
    is($r && $r->{status}, 200, 'a second request on the same connection');
    ok($r && eval { JSON::PP::decode_json($r->{body}) },
        'is answered in full');
    for my $st (204, 304) {
        $r = $c->get("/st?status=$st", host => 'up.test');
        is($r && $r->{status}, $st, "a $st on the same connection");
        is($r && $r->{body}, '', "without a body ($st)");
    }
    $r = $c->get('/last', host => 'up.test');
    is($c->requests, 5, 'five answers on one connection') or diag($c->error);
    ok($c->is_open, 'which stays open');
    $c->close;
}

# 7. Upstream status codes pass through.
for my $kind (qw(h1 h2)) {
    for my $st (404, 503) {
        my $r = curl($kind, "/st?status=$st");
        is($r->{status}, $st, "the upstream's $st reaches an $kind client");
        ok($r->{json} && $r->{json}{stream},
            "with the upstream's body ($st, $kind)");
    }
}

# 8. Multiplexing: 300 requests, 30 at a time, from each client kind; the
# upstream sees a few long-lived connections.
{
    my $out = cmd('h2load', '-n', '300', '-c', '3', '-m', '10',
        '-H', ':authority: up.test', "$h2base/load-h2?delay=20");
    like($out, qr/requests: 300 total, 300 started, 300 done, 300 succeeded, 0 failed/,
        'h2load -n300 -c3 -m10 through the h2c listener: all succeed')
        or diag($out . $LAST_ERR);
    like($out, qr/status codes: 300 2xx/, 'all 200');
    $out = cmd('h2load', '--h1', '-n', '300', '-c', '30',
        '-H', ':authority: up.test', "$h1base/load-h1?delay=20");
    like($out, qr/requests: 300 total, 300 started, 300 done, 300 succeeded, 0 failed/,
        '300 HTTP/1.1 requests on 30 connections: all succeed')
        or diag($out . $LAST_ERR);
    like($out, qr/status codes: 300 2xx/, 'all 200');

    my @ev = $t->h2_events(8081, ev => 'stream', path => qr{^/load-});
    is(scalar @ev, 600, 'the upstream got each request once');
    my %conns = map { $_->{conn} => 1 } @ev;
    cmp_ok(scalar(keys %conns), '<=', 4,
        'on at most 2 connections per worker');
    my @opened = $t->h2_events(8081, ev => 'conn_open');
    cmp_ok(scalar @opened, '<=', 4,
        'which are the ones opened earlier: at most 2 per worker so far')
        or diag(scalar(@opened) . ' connections');
    cmp_ok(max(map { $_->{concurrent} } @ev) // 0, '>', 1,
        'with several streams at once on a connection');
}

# 9. MAX_CONCURRENT_STREAMS = 2: 60 requests at once all succeed, and
# once meshgate knows the limit it never opens a third stream on a
# connection. The backend refuses streams above 2 (as nghttp2 and Go do);
# those sent before our SETTINGS were acknowledged are legal (RFC 9113
# §6.5.2: the limit is not known yet) and must be retried.
{
    my $out = cmd('h2load', '-n', '60', '-c', '6', '-m', '10',
        '-H', ':authority: ms.test', "$h2base/ms?delay=100");
    like($out, qr/requests: 60 total, 60 started, 60 done, 60 succeeded, 0 failed/,
        'max-streams 2: 60 concurrent requests all succeed')
        or diag($out . $LAST_ERR);
    like($out, qr/status codes: 60 2xx/, 'all 200');
    my @ev = $t->h2_events(8082, ev => 'stream', path => qr{^/ms});
    is(scalar @ev, 60, 'each was processed once');
    my @refused = $t->h2_events(8082, ev => 'refused');
    my @over = grep { $_->{acked} && $_->{concurrent} > 2 } @ev, @refused;
    is(scalar @over, 0, 'after acknowledging SETTINGS meshgate never has '
        . 'more than 2 streams open on a connection')
        or diag(join "\n", map { "conn $_->{conn} stream $_->{stream}: "
            . "$_->{concurrent} open" } @over);
    # Another connection only when the others are full: 60 requests at 2
    # per connection need at most 30 at once, retries of refused streams
    # included.
    my @opened = $t->h2_events(8082, ev => 'conn_open');
    cmp_ok(scalar @opened, '<=', 30,
        'at most 30 upstream connections for 60 requests at 2 streams each')
        or diag(scalar(grep { !$_->{acked} } @refused) . ' streams refused '
            . 'before SETTINGS were acknowledged; streams per connection: '
            . join(' ', map { my $c = $_->{conn};
                scalar(grep { $_->{conn} == $c } @ev) } @opened));
}

# 10. GOAWAY after every 5 streams: no request fails, none runs twice.
{
    my $c = Test::Meshgate::Client->new(port => $h1port, timeout => 15);
    my $ok = 0;
    for my $i (1 .. 100) {
        my $r = $c->get("/ga-seq-$i", host => 'ga.test');
        unless ($r) {
            diag("request $i: " . $c->error);
            $c = Test::Meshgate::Client->new(port => $h1port, timeout => 15);
            next;
        }
        $ok++ if $r->{status} == 200;
    }
    $c->close;
    is($ok, 100, 'GOAWAY after 5 streams: 100 sequential requests, all 200');
    my $out = cmd('h2load', '-n', '50', '-c', '5', '-m', '10',
        '-H', ':authority: ga.test', "$h2base/ga-conc?delay=20");
    like($out, qr/requests: 50 total, 50 started, 50 done, 50 succeeded, 0 failed/,
        'and 50 concurrent ones all succeed')
        or diag($out . $LAST_ERR);
    like($out, qr/status codes: 50 2xx/, 'with 200');
    my @seq = $t->h2_events(8083, ev => 'stream', path => qr{^/ga-seq-});
    my @conc = $t->h2_events(8083, ev => 'stream', path => qr{^/ga-conc});
    is(scalar(@seq) . ' ' . scalar(@conc), '100 50',
        'the upstream processed each exactly once');
    my @conns = $t->h2_events(8083, ev => 'conn_open');
    cmp_ok(scalar @conns, '>=', 30,
        'on many connections (each ends after 5 streams)');
    # The sequential ones alone fill 20 connections of 5 streams each.
    my @gone = $t->h2_events(8083, ev => 'goaway_sent');
    cmp_ok(scalar @gone, '>=', 20, 'ended by GOAWAYs');
    # Sequential requests leave time for the GOAWAY to arrive before the
    # next request (it precedes the 5th response).
    my @late = $t->h2_events(8083, ev => 'ignored', path => qr{^/ga-seq-});
    is(scalar @late, 0, 'no request goes on a connection after its GOAWAY')
        or diag(join ' ', map { $_->{path} } @late);
}

# 11. PING keepalive: an idle connection gets PINGs and, while they are
# answered, survives; unanswered, it is closed and replaced.
{
    my $c = Test::Meshgate::Client->new(port => $h1port, timeout => 10);
    my $r = $c->get('/ka1', host => 'ka.test');
    my $u = $r && eval { JSON::PP::decode_json($r->{body}) };
    ok($u, 'keepalive_interval = 1: a request') or diag($c->error);
    my $conn = $u ? $u->{conn} : -1;
    my $t0 = time;
    my @pings;
    waitfor(sub {
        @pings = $t->h2_events(8084, ev => 'ping', conn => $conn);
        return scalar @pings;
    }, 4);
    ok(@pings && $pings[0]{t} - $t0 <= 3,
        'the idle upstream connection gets a PING within 3 s')
        or diag(@pings ? 'first PING after ' . ($pings[0]{t} - $t0) . ' s'
            : 'no PING');
    sleep 1.2;
    $r = $c->get('/ka2', host => 'ka.test');
    $u = $r && eval { JSON::PP::decode_json($r->{body}) };
    is($u && $u->{conn}, $conn,
        'answered PINGs keep it: the next request uses it');
    $c->close;

    my @up_pings = $t->h2_events(8081, ev => 'ping');
    is(scalar @up_pings, 0, 'keepalive_interval = 0 sends no PING');

    $c = Test::Meshgate::Client->new(port => $h1port, timeout => 10);
    $r = $c->get('/deaf1', host => 'deaf.test');
    $u = $r && eval { JSON::PP::decode_json($r->{body}) };
    ok($u, 'a request to an upstream that never acknowledges PINGs')
        or diag($c->error);
    $conn = $u ? $u->{conn} : -1;
    my @closed;
    waitfor(sub {
        @closed = $t->h2_events(8085, ev => 'conn_close', conn => $conn);
        return scalar @closed;
    }, 6);
    ok(@closed, 'keepalive_timeout = 1: the connection is closed')
        or diag('backend log: ' . read_file($t->h2_backend_log(8085)));
    ok(scalar($t->h2_events(8085, ev => 'ping', conn => $conn)),
        'after PINGs went unanswered');
    $r = $c->get('/deaf2', host => 'deaf.test');
    $u = $r && eval { JSON::PP::decode_json($r->{body}) };
    ok($u && $u->{conn} != $conn, 'the next request gets a new connection')
        or diag($r ? $r->{status} : $c->error);
    $c->close;
}

# 12. Failures: a reset stream, a dropped connection, a dead endpoint.
for my $kind (qw(h1 h2)) {
    my $r = curl($kind, "/rst-$kind?reset=1");
    is($r->{status}, 502, "RST_STREAM from the upstream: 502 ($kind)")
        or diag($r->{err});
    $r = curl($kind, "/after-rst-$kind");
    is($r->{status}, 200, "the next request works ($kind)");
    $r = curl($kind, "/drop-$kind?close=1");
    is($r->{status}, 502, "the upstream drops the connection: 502 ($kind)")
        or diag($r->{err});
    $r = curl($kind, "/after-drop-$kind");
    is($r->{status}, 200, "the next request works ($kind)");
    ok($r->{json} && $r->{json}{conn}, "answered by the upstream ($kind)");
    $r = curl($kind, '/x', host => 'dead.test');
    is($r->{status}, 503, "a dead endpoint: 503 ($kind)");
    like($r->{body}, qr/\bdead\b/, "the 503 names the cluster ($kind)");
}
{
    # Several at once through a stream reset: only that one fails.
    my $out = cmd('h2load', '-n', '40', '-c', '2', '-m', '20',
        '-H', ':authority: up.test', "$h2base/after-all?delay=50");
    like($out, qr/status codes: 40 2xx/,
        'after resets and drops, 40 concurrent requests all get 200')
        or diag($out . $LAST_ERR);
}

# 13. The access logs. Each worker writes its lines in its own time: wait
# for all of them.
{
    my @want = (
        [ 'h1', qr{"GET /st\?status=404 HTTP/1\.1" 404 },
          'the access log has the upstream 404' ],
        [ 'h1', qr{"GET /rst-h1\?reset=1 HTTP/1\.1" 502 },
          'and the 502 of a reset stream' ],
        [ 'h2', qr{"GET /get-h2\?x=%20y HTTP/2\.0" 200 },
          'the h2c listener logs HTTP/2.0 with 200' ],
        [ 'h2', qr{"GET /drop-h2\?close=1 HTTP/2\.0" 502 },
          'and the 502 of a dropped connection' ] );
    my %lines;
    my $found = sub {
        my ($w) = @_;
        return grep { $_ =~ $w->[1] } @{$lines{$w->[0]}};
    };
    waitfor(sub {
        %lines = map { $_ => [ split /\n/, $t->read_file("access-$_.log") ] }
            qw(h1 h2);
        return !grep { !$found->($_) } @want;
    }, 10);
    ok(scalar($found->($_)), $_->[2]) for @want;
}

$t->stop_and_check;
done_testing();
