#!/usr/bin/perl

# Upstream HTTP/2 over TLS (cluster protocol = "h2", ALPN h2) against
# t/backend/h2-backend.py, with certificates made here by openssl: a
# verified upstream with SNI serves both client kinds, bodies, trailers
# and multiplexed load; a wrong SNI or CA fails the verification with a
# 502/503 and a log line saying so; verify = false accepts it; mutual TLS
# works with the cluster's client certificate and fails without one; an
# upstream that does not offer h2 by ALPN fails with a clear reason.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Digest::SHA qw(sha1_hex);
use JSON::PP ();
use POSIX ();
use Test::More;
use Test::Meshgate;

for my $tool (qw(curl nghttp h2load openssl)) {
    plan(skip_all => "$tool is not installed")
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}
plan(skip_all => 'curl has no HTTP/2')
    unless `curl --version` =~ /\bHTTP2\b/;
plan(skip_all => 'no python3 with the h2 package')
    unless Test::Meshgate::h2_python();

my $t = Test::Meshgate->new;
my $dir = $t->testdir;

$t->make_ca('ca');
$t->make_ca('other');
$t->make_cert('srv', cn => 'h2.upstream.test', san => 'DNS:h2.upstream.test');
$t->make_cert('client', cn => 'client one');

$t->run_h2_backend(port => 8081, name => 'tls', tls_cert => 'srv.crt',
    tls_key => 'srv.key');
$t->run_h2_backend(port => 8082, name => 'mtls', tls_cert => 'srv.crt',
    tls_key => 'srv.key', client_ca => 'ca.crt');
$t->run_h2_backend(port => 8083, name => 'h1only', tls_cert => 'srv.crt',
    tls_key => 'srv.key', alpn => 'http/1.1');

$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = (
    { name = "h1"; listen = "127.0.0.1:%%PORT_8000%%"; routes = "mesh"; },
    { name = "h2c"; listen = "127.0.0.1:%%PORT_8001%%"; h2c = true;
      routes = "mesh"; } );
routes = { mesh = (
    { domains = [ "good.test" ]; prefix = "/"; cluster = "good"; },
    { domains = [ "wrongsni.test" ]; prefix = "/"; cluster = "wrongsni"; },
    { domains = [ "wrongca.test" ]; prefix = "/"; cluster = "wrongca"; },
    { domains = [ "noverify.test" ]; prefix = "/"; cluster = "noverify"; },
    { domains = [ "mtls.test" ]; prefix = "/"; cluster = "mtls"; },
    { domains = [ "nocert.test" ]; prefix = "/"; cluster = "nocert"; },
    { domains = [ "h1only.test" ]; prefix = "/"; cluster = "h1only"; } ); };
clusters = (
    { name = "good"; protocol = "h2"; response_timeout = 30.0;
      connect_timeout = 2.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } );
      tls = { ca = "ca.crt"; sni = "h2.upstream.test"; verify = true; }; },
    { name = "wrongsni"; protocol = "h2"; connect_timeout = 2.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } );
      tls = { ca = "ca.crt"; sni = "wrong.upstream.test"; verify = true; }; },
    { name = "wrongca"; protocol = "h2"; connect_timeout = 2.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } );
      tls = { ca = "other.crt"; sni = "h2.upstream.test"; }; },
    { name = "noverify"; protocol = "h2"; connect_timeout = 2.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } );
      tls = { sni = "wrong.upstream.test"; verify = false; }; },
    { name = "mtls"; protocol = "h2"; connect_timeout = 2.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } );
      tls = { ca = "ca.crt"; sni = "h2.upstream.test";
              cert = "client.crt"; key = "client.key"; }; },
    { name = "nocert"; protocol = "h2"; connect_timeout = 2.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } );
      tls = { ca = "ca.crt"; sni = "h2.upstream.test"; }; },
    { name = "h1only"; protocol = "h2"; connect_timeout = 2.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8083%%"; } );
      tls = { ca = "ca.crt"; sni = "h2.upstream.test"; }; } );
EOF
$t->run;

my $h1base = 'http://127.0.0.1:' . port(8000);
my $h2base = 'http://127.0.0.1:' . port(8001);
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

# curl($kind, $host, $path, args => [...], file => F): curl --http1.1 to the
# HTTP/1.1 listener ('h1') or --http2-prior-knowledge to the h2c one
# ('h2'). Returns { status, headers, body (unless |file|), json }.
sub curl {
    my ($kind, $host, $path, %o) = @_;
    my $n = ++$ncmd;
    my $body = $o{file} // "$dir/curl-$n.body";
    my $hdr = "$dir/curl-$n.head";
    my $w = cmd('curl', '-sS', $kind eq 'h2' ? '--http2-prior-knowledge'
        : '--http1.1', '--max-time', '60', '-o', $body, '-D', $hdr,
        '-w', '%{http_code}', '-H', "Host: $host", @{$o{args} || []},
        ($kind eq 'h2' ? $h2base : $h1base) . $path);
    my $r = { status => $w, err => $LAST_ERR, headers => {} };
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

sub up_field {
    my ($echo, $name) = @_;
    my ($v) = map { $_->[1] } grep { $_->[0] eq $name }
        @{($echo // {})->{headers} || []};
    return $v;
}

# 1. A verified upstream, ALPN h2, SNI.
{
    for my $kind (qw(h1 h2)) {
        my $r = curl($kind, 'good.test', "/hello-$kind");
        is($r->{status}, 200, "h2 over TLS, $kind client: 200")
            or diag("$r->{err} $r->{body}");
        is($r->{json} && $r->{json}{alpn}, 'h2',
            "the upstream connection negotiated h2 ($kind)");
        is(up_field($r->{json}, ':scheme'), 'https', ":scheme https ($kind)");
        is(up_field($r->{json}, ':authority'), 'good.test',
            ":authority from the client ($kind)");
    }
    my @open = $t->h2_events(8081, ev => 'conn_open');
    ok(@open && !grep({ ($_->{alpn} // '') ne 'h2' } @open),
        'the backend logs ALPN h2 on each connection');
    ok(@open && !grep({ ($_->{sni} // '') ne 'h2.upstream.test' } @open),
        'and the SNI h2.upstream.test');
}

# 2. Bodies and trailers over TLS.
{
    my $n = 5 * 1000 * 1000;
    my $up = "$dir/up.bin";
    system("head -c $n /dev/urandom > $up") == 0 or die "head: $?\n";
    my $sha = Digest::SHA->new(1)->addfile($up)->hexdigest;
    for my $kind (qw(h1 h2)) {
        my $r = curl($kind, 'good.test', "/up-$kind",
            args => [ '--data-binary', "\@$up" ]);
        is($r->{json} && "$r->{json}{body_len} $r->{json}{body_sha1}",
            "$n $sha", "a 5 MB upload over TLS arrives intact ($kind)")
            or diag("$r->{status} $r->{err}");
    }
    unlink $up;

    my $big = 10 * 1000 * 1000;
    my $want = sha1_hex(pattern_bytes($big));
    my $f = "$dir/down.bin";
    for my $kind (qw(h1 h2)) {
        unlink $f;
        my $r = curl($kind, 'good.test', "/down?size=$big&nolength=1",
            file => $f);
        is($r->{status}, 200, "a 10 MB download over TLS ($kind)");
        is(Digest::SHA->new(1)->addfile($f)->hexdigest, $want,
            "arrives intact ($kind)");
    }
    unlink $f;

    my $out = cmd('nghttp', '-v', '-t', '30', '-H', ':authority: good.test',
        '-H', 'te: trailers', "$h2base/tr?trailers=1&size=1000");
    my ($trailer) = $out =~ /recv DATA frame.*recv \(stream_id=\d+\) x-checksum: ([0-9a-f]+)/s;
    is($trailer, sha1_hex(pattern_bytes(1000)),
        'response trailers reach an HTTP/2 client after the DATA')
        or diag($out . $LAST_ERR);
}

# 3. Multiplexed load over TLS.
{
    my $out = cmd('h2load', '-n', '200', '-c', '4', '-m', '10',
        '-H', ':authority: good.test', "$h2base/load?delay=20");
    like($out, qr/requests: 200 total, 200 started, 200 done, 200 succeeded, 0 failed/,
        'h2load -n200 -c4 -m10 over an h2 upstream: all succeed')
        or diag($out . $LAST_ERR);
    like($out, qr/status codes: 200 2xx/, 'all 200');
    my @ev = $t->h2_events(8081, ev => 'stream', path => qr{^/load});
    my %conns = map { $_->{conn} => 1 } @ev;
    cmp_ok(scalar(keys %conns), '<=', 4,
        'on at most 2 TLS connections per worker');
}

# 4. Verification failures.
{
    my $before = scalar $t->h2_events(8081, ev => 'tls_error');
    my $since = $t->log_offset;
    my $r = curl('h1', 'wrongsni.test', '/wrongsni');
    like($r->{status}, qr/^50[23]$/, 'a name the certificate lacks: 502/503');
    isnt($r->{body} // '', '', 'with a body saying why');
    ok($t->waitforlog(qr/upstream.*certificate verify/i, since => $since,
        timeout => 3), 'the error log says certificate verify failed')
        or diag($t->log(since => $since));
    is(scalar($t->h2_events(8081, ev => 'stream', path => '/wrongsni')), 0,
        'and no request reached that upstream');
    ok(waitfor(sub {
        scalar($t->h2_events(8081, ev => 'tls_error')) > $before }, 3),
        'which saw the handshake aborted');

    $since = $t->log_offset;
    $r = curl('h2', 'wrongca.test', '/wrongca');
    like($r->{status}, qr/^50[23]$/, 'a certificate from another CA: 502/503');
    ok($t->waitforlog(qr/upstream.*certificate verify/i, since => $since,
        timeout => 3), 'logged as a failed certificate verification');

    $r = curl('h1', 'noverify.test', '/noverify');
    is($r->{status}, 200, 'verify = false accepts the same certificate');
    $r = curl('h1', 'good.test', '/still-good');
    is($r->{status}, 200, 'and the verified cluster still works');
}

# 5. Mutual TLS.
{
    my $r = curl('h1', 'mtls.test', '/mtls');
    is($r->{status}, 200, 'an upstream that requires a client certificate: '
        . '200 with cert/key') or diag("$r->{err} $r->{body}");
    my @open = $t->h2_events(8082, ev => 'conn_open');
    ok(@open && $open[0]{client_subject} =~ /client one/,
        'the upstream got our client certificate')
        or diag(explain \@open);
    $r = curl('h2', 'mtls.test', '/mtls-h2');
    is($r->{status}, 200, 'from an HTTP/2 client too');

    my $before = scalar $t->h2_events(8082, ev => 'tls_error');
    my $since = $t->log_offset;
    $r = curl('h1', 'nocert.test', '/nocert');
    like($r->{status}, qr/^50[23]$/, 'without cert/key: 502/503');
    my @err;
    waitfor(sub {
        @err = $t->h2_events(8082, ev => 'tls_error');
        return @err > $before;
    }, 3);
    like($err[-1] ? $err[-1]{error} : '', qr/certificate/i,
        'the upstream refused the handshake for want of a certificate');
    is(scalar($t->h2_events(8082, ev => 'stream', path => '/nocert')), 0,
        'and served nothing');
    ok($t->waitforlog(qr/\bnocert\b/, since => $since, timeout => 3),
        'the error log names the cluster');
}

# 6. An upstream that does not offer h2 by ALPN.
{
    my $since = $t->log_offset;
    my $r = curl('h1', 'h1only.test', '/h1only');
    like($r->{status}, qr/^50[23]$/, 'ALPN without h2: 502/503');
    ok($t->waitforlog(qr/ALPN/i, since => $since, timeout => 3),
        'the error log says ALPN did not select h2')
        or diag($t->log(since => $since));
    my @open = $t->h2_events(8083, ev => 'conn_open');
    ok(@open && !grep({ defined $_->{alpn} } @open),
        'meshgate offered only h2 (the upstream could select nothing)')
        or diag(explain \@open);
    is(scalar($t->h2_events(8083, ev => 'h1_request')), 0,
        'and sent no HTTP/2 (nor anything) on a connection without h2');
    $r = curl('h2', 'good.test', '/after-all');
    is($r->{status}, 200, 'the good cluster still works');
}

$t->stop_and_check;
done_testing();
