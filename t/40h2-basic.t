#!/usr/bin/perl

# HTTP/2 by prior knowledge (h2c) with real clients, curl, nghttp and
# h2load: direct responses, requests proxied to an HTTP/1.1 upstream (the
# header mapping it sees), bodies both ways with and without
# content-length, a 50 MB download, HEAD/204/304 without DATA, 404 and
# 503, the access log, many streams on one connection and a load run.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Digest::SHA qw(sha1_hex);
use POSIX ();
use Test::More;
use Time::HiRes qw(time);
use Test::Meshgate;

for my $tool (qw(curl nghttp h2load)) {
    plan(skip_all => "$tool is not installed")
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}
plan(skip_all => 'curl has no HTTP/2')
    unless `curl --version` =~ /\bHTTP2\b/;

my $t = Test::Meshgate->new;

$t->run_backend(port => 8081, name => 'b1');
$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = (
    { name = "h2c"; listen = "127.0.0.1:%%PORT_8000%%"; h2c = true;
      routes = "mesh"; access_log = "%%TESTDIR%%/access.log"; },
    { name = "h1only"; listen = "127.0.0.1:%%PORT_8001%%"; routes = "mesh"; } );
routes = { mesh = (
    { domains = [ "direct.test" ]; prefix = "/";
      direct_response = { status = 200; body = "direct answer\n";
                          content_type = "text/x-direct"; }; },
    { domains = [ "dead.test" ]; prefix = "/"; cluster = "dead"; },
    { domains = [ "b.test", "127.0.0.1" ]; prefix = "/";
      cluster = "backend"; } ); };
clusters = (
    { name = "backend"; response_timeout = 30.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); },
    { name = "dead"; connect_timeout = 2.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8089%%"; } ); } );
EOF
$t->run;
my $port = port(8000);
my $base = "http://127.0.0.1:$port";
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

# curl_h2($path, host => H, args => [...]): a parsed response from
# curl --http2-prior-knowledge (body in a file when |file| is given).
sub curl_h2 {
    my ($path, %o) = @_;
    my $n = ++$ncmd;
    my $body = $o{file} // "$dir/curl-$n.body";
    my $hdr = "$dir/curl-$n.head";
    my $w = cmd('curl', '-sS', '--http2-prior-knowledge', '--max-time', '60',
        '-o', $body, '-D', $hdr, '-w', '%{http_version} %{http_code}',
        (defined $o{host} ? ('-H', "Host: $o{host}") : ()),
        @{$o{args} || []}, "$base$path");
    my $r = { w => $w, err => $LAST_ERR };
    ($r->{version}, $r->{status}) = split / /, $w;
    my %h;
    for my $l (split /\r?\n/, read_file($hdr)) {
        $h{lc $1} = $2 if $l =~ /^([^:\s]+):\s*(.*?)\s*$/;
    }
    $r->{headers} = \%h;
    $r->{body} = $o{file} ? undef : read_file($body);
    return $r;
}

# The HTTP/1.1 request head the backend got, from an /echo body:
# { line, h => { lc name => [ values ] }, names => [ in order ] }.
sub echo_head {
    my ($body) = @_;
    my ($head) = split /\r\n\r\n/, $body // '', 2;
    my @lines = split /\r\n/, $head // '';
    my %u = (line => shift @lines, h => {}, names => []);
    for my $l (@lines) {
        my ($n, $v) = $l =~ /^([^:]+):[ \t]*(.*?)[ \t]*$/ or next;
        push @{$u{names}}, $n;
        push @{$u{h}{lc $n}}, $v;
    }
    return \%u;
}

# nghttp_v(@args, $url): nghttp -v output, parsed: status, headers (lc
# name => value), data frames on stream 13 (nghttp's first request
# stream), whether END_STREAM came on the HEADERS frame, and the body.
sub nghttp_v {
    my @args = @_;
    my $out = cmd('nghttp', '-v', '-t', '30', @args);
    my %r = (raw => $out, headers => {}, data_frames => 0);
    for my $l (split /\n/, $out) {
        if ($l =~ /recv \(stream_id=\d+\) ([^:\s][^:]*|:[a-z]+): (.*)$/) {
            $r{headers}{$1} = $2;
        } elsif ($l =~ /recv DATA frame <length=(\d+)/) {
            $r{data_frames}++;
            $r{data_bytes} += $1;
        }
    }
    $r{status} = $r{headers}{':status'};
    $r{headers_end_stream} = $out =~ /recv HEADERS frame <[^>]*flags=0x05/
        ? 1 : 0;
    return \%r;
}

# A direct response
{
    my $r = curl_h2('/hello', host => 'direct.test');
    is($r->{version}, '2', 'curl speaks HTTP/2 by prior knowledge')
        or diag($r->{err});
    is($r->{status}, 200, 'a direct response over h2c');
    is($r->{body}, "direct answer\n", 'with its body');
    is($r->{headers}{'content-type'}, 'text/x-direct',
        'and its content type');

    my $out = cmd('nghttp', '-t', '10', '-H', ':authority: direct.test',
        "$base/hello");
    is($out, "direct answer\n", 'nghttp gets the direct response too')
        or diag($LAST_ERR);
}

# h2c only where the listener allows it.
{
    my $raw = http("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", port => port(8001),
        timeout => 3, quiet => 1) // '';
    unlike($raw, qr/^\x00..\x04/s,
        'a listener without h2c = true never answers the preface with '
        . 'SETTINGS');
    my $h1 = cmd('curl', '-sS', '--max-time', '10', '-H', 'Host: direct.test',
        "http://127.0.0.1:" . port(8001) . '/hello');
    is($h1, "direct answer\n", 'it still serves HTTP/1.1');
    $h1 = cmd('curl', '-sS', '--max-time', '10', '-H', 'Host: direct.test',
        "$base/hello");
    is($h1, "direct answer\n", 'and so does the h2c listener');
}

# A proxied request: what the HTTP/1.1 upstream sees.
{
    my $out = cmd('nghttp', '-t', '10', '-H', ':authority: b.test:8080',
        '-H', 'cookie: a=1', '-H', 'cookie: b=2', '-H', 'cookie: c=3',
        '-H', 'te: trailers', '-H', 'x-custom: one', '-H', 'x-custom: two',
        "$base/echo?q=1&r=%2F");
    my $u = echo_head($out);
    is($u->{line}, 'GET /echo?q=1&r=%2F HTTP/1.1',
        'the upstream gets an HTTP/1.1 request line with the query');
    is_deeply($u->{h}{host}, [ 'b.test:8080' ], 'Host comes from :authority');
    is_deeply($u->{h}{cookie}, [ 'a=1; b=2; c=3' ],
        'cookie fields are joined with "; " into one');
    is_deeply($u->{h}{'x-forwarded-for'}, [ '127.0.0.1' ],
        'X-Forwarded-For names the client');
    is_deeply($u->{h}{'x-forwarded-proto'}, [ 'http' ],
        'X-Forwarded-Proto: http');
    is(join(',', @{$u->{h}{'x-custom'} || []}), 'one,two',
        'repeated fields stay, in order');
    ok(!$u->{h}{te}, 'TE is not forwarded') or diag($out);
    ok(!$u->{h}{connection} && !$u->{h}{'keep-alive'}
        && !$u->{h}{'transfer-encoding'} && !$u->{h}{upgrade},
        'no connection-specific fields go upstream');
    ok(!grep({ /^:/ } @{$u->{names}}), 'no pseudo-header goes upstream');
    is(scalar(@{$u->{h}{via} || []}), 1, 'one Via');
    # RFC 9110 §7.6.3: received-protocol is the version of the request as
    # received, HTTP/2 here.
    like($u->{h}{via}[0] // '', qr{^(?:HTTP/)?2(?:\.0)? meshgate$},
        'Via names HTTP/2 as the protocol received');

    my $r = curl_h2('/echo', host => 'b.test');
    $u = echo_head($r->{body});
    is_deeply($u->{h}{host}, [ 'b.test' ],
        'curl\'s Host (sent as :authority) is the Host upstream');
    is($r->{headers}{'x-backend'}, 'b1', 'response headers come back');
    ok(!exists $r->{headers}{connection},
        'no Connection field in an HTTP/2 response');

    # Without :authority curl sends none; nghttp always does: the URL's.
    $out = cmd('nghttp', '-t', '10', "$base/echo");
    $u = echo_head($out);
    is_deeply($u->{h}{host}, [ "127.0.0.1:$port" ],
        'the URL authority becomes Host');
}

# Request bodies
{
    my $n = 5 * 1000 * 1000 + 7;
    my $file = "$dir/upload.bin";
    open my $fh, '>', $file or die;
    print $fh pattern_bytes($n);
    close $fh;
    my $sha = sha1_hex(pattern_bytes($n));

    my $r = curl_h2('/upload', host => 'b.test',
        args => [ '--data-binary', "\@$file" ]);
    is($r->{body}, "bytes=$n sha1=$sha",
        'a 5 MB POST with content-length arrives intact');

    # curl -T - does not know the length: no content-length, so the
    # upstream request is chunked.
    my $out = cmd('sh', '-c', "curl -sS --http2-prior-knowledge --max-time 60"
        . " -X POST -T - -H 'Host: b.test' $base/upload < $file");
    is($out, "bytes=$n sha1=$sha",
        'a 5 MB POST without content-length arrives intact')
        or diag($LAST_ERR);
    $out = cmd('sh', '-c', "printf 'hello world' | curl -sS "
        . "--http2-prior-knowledge --max-time 10 -X POST -T - "
        . "-H 'Host: b.test' $base/echo");
    my $u = echo_head($out);
    is(lc join(',', @{$u->{h}{'transfer-encoding'} || []}), 'chunked',
        'without content-length the upstream request is chunked');
    ok(!$u->{h}{'content-length'}, 'and has no Content-Length');
    like($out, qr/\r\n\r\nhello world\z/, 'the body is echoed');

    $out = cmd('nghttp', '-t', '10', '-d', $file, '-H', ':authority: b.test',
        "$base/upload");
    is($out, "bytes=$n sha1=$sha", 'nghttp -d uploads intact too');

    $out = cmd('sh', '-c', "printf 'abc' | curl -sS --http2-prior-knowledge "
        . "--max-time 10 -H 'Host: b.test' --data-binary \@- $base/echo");
    $u = echo_head($out);
    is_deeply($u->{h}{'content-length'}, [ 3 ],
        'a small POST keeps its Content-Length upstream');
}

# Response bodies: 50 MB with and without content-length.
{
    my $n = 50 * 1000 * 1000;
    my $want = sha1_hex(pattern_bytes($n));
    my $f = "$dir/down.bin";
    my $r = curl_h2("/bytes/$n", host => 'b.test', file => $f);
    is($r->{status}, 200, 'a 50 MB download');
    is(-s $f, $n, 'all of it');
    is(Digest::SHA->new(1)->addfile($f)->hexdigest, $want, 'intact');
    is($r->{headers}{'content-length'}, $n, 'with its content-length');

    $r = curl_h2("/chunked/$n", host => 'b.test', file => $f);
    is($r->{status}, 200, 'a 50 MB chunked download');
    is(Digest::SHA->new(1)->addfile($f)->hexdigest, $want,
        'arrives intact');
    ok(!exists $r->{headers}{'transfer-encoding'},
        'without Transfer-Encoding');
    unlink $f;
}

# No body: HEAD, 204, 304. The HEADERS frame ends the stream.
{
    my $r = nghttp_v('-H', ':method: HEAD', '-H', ':authority: b.test',
        "$base/bytes/5000");
    is($r->{status}, 200, 'HEAD');
    is($r->{headers}{'content-length'}, 5000,
        'HEAD gets the content-length of the GET');
    ok($r->{headers_end_stream} && !$r->{data_frames},
        'and no DATA: HEADERS carries END_STREAM') or diag($r->{raw});

    $r = curl_h2('/bytes/5000', host => 'b.test', args => [ '-I' ]);
    is($r->{status}, 200, 'curl -I gets 200');

    for my $st (204, 304) {
        $r = nghttp_v('-H', ':authority: b.test', "$base/status/$st");
        is($r->{status}, $st, "a $st");
        ok($r->{headers_end_stream} && !$r->{data_frames},
            "without DATA frames ($st)") or diag($r->{raw});
    }
    $r = nghttp_v('-H', ':authority: b.test', "$base/chunked/0");
    is($r->{status}, 200, 'an empty chunked response');
    ok(!$r->{data_bytes}, 'has no body bytes');
}

# Errors made by the proxy.
{
    my $r = curl_h2('/x', host => 'nowhere.test');
    is($r->{status}, 404, 'no route: 404');
    $r = curl_h2('/x', host => 'dead.test');
    is($r->{status}, 503, 'upstream down: 503');
    like($r->{body}, qr/\bdead\b/, 'the 503 says which cluster failed')
        or diag($r->{body});
    like($r->{body}, qr/refused|connect/i, 'and why');
    $r = curl_h2('/after', host => 'b.test');
    is($r->{body}, "b1 GET /after\n", 'the next request is served');
}

# The access log
{
    # Each worker writes its own lines, each in its own time.
    my (@lines, @all);
    waitfor(sub {
        @all = grep { /"[A-Z]+ \S+ HTTP\/[\d.]+"/ }
            split /\n/, $t->read_file('access.log');
        @lines = grep { m{"GET /after } } @all;
        return @lines && grep({ m{"GET /hello HTTP/1\.1"} } @all)
            && grep { m{"GET /x HTTP/2\.0" 503 } } @all;
    }, 5);
    like($lines[0] // '', qr{ h2c "GET /after HTTP/2\.0" 200 \d+ },
        'the access log line says HTTP/2.0');
    my @h1 = grep { m{ HTTP/1\.1" } } @all;
    is(scalar(@h1), 1, 'only the one HTTP/1.1 request is logged as 1.1')
        or diag(join "\n", @h1);
    ok(grep({ m{"GET /x HTTP/2\.0" 503 } } @all), 'the 503 is logged');
}

# Many streams at once on one connection: 100 slow requests finish in
# about the time of one.
{
    my $start = time;
    my $out = cmd('h2load', '-n', '100', '-c', '1', '-m', '100',
        '-H', ':authority: b.test', "$base/delay/500");
    my $took = time - $start;
    like($out, qr/requests: 100 total, 100 started, 100 done, 100 succeeded/,
        '100 concurrent streams on one connection all succeed')
        or diag($out . $LAST_ERR);
    like($out, qr/status codes: 100 2xx/, 'all with 200');
    cmp_ok($took, '<', 10, 'and run side by side (not 100 x 0.5 s)');

    $out = cmd('nghttp', '-n', '-s', '-t', '30', '-m', '50',
        '-H', ':authority: b.test', "$base/bytes/100000");
    my @ok = $out =~ /^\s*\d+\s+\+\S+\s+\+\S+\s+\S+\s+200\s/mg;
    is(scalar(@ok), 50, 'nghttp -m 50: 50 responses with 200')
        or diag($out . $LAST_ERR);
}

# Load: h2load over 10 connections, 10 streams each.
{
    my $out = cmd('h2load', '-n', '20000', '-c', '10', '-m', '10',
        '-H', ':authority: direct.test', "$base/");
    like($out, qr/requests: 20000 total, 20000 started, 20000 done, 20000 succeeded, 0 failed, 0 errored, 0 timeout/,
        'h2load -n 20000 -c 10 -m 10: every request succeeds (direct)')
        or diag($out . $LAST_ERR);
    $out = cmd('h2load', '-n', '5000', '-c', '10', '-m', '10',
        '-H', ':authority: b.test', "$base/bytes/2000");
    like($out, qr/requests: 5000 total, 5000 started, 5000 done, 5000 succeeded, 0 failed, 0 errored, 0 timeout/,
        'h2load -n 5000 -c 10 -m 10: every request succeeds (proxied)')
        or diag($out . $LAST_ERR);
    like($out, qr/status codes: 5000 2xx/, 'all 200');
}

$t->stop_and_check;
done_testing();
