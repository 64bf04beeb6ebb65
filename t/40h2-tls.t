#!/usr/bin/perl

# HTTP/2 over TLS, chosen by ALPN: curl --http2 and nghttp get h2, an
# HTTP/1.1-only client gets http/1.1 on the same port, a listener's alpn
# list decides what is offered, bodies arrive intact both ways, and h2load
# over TLS succeeds. Certificates are made with openssl at test time.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Digest::SHA qw(sha1_hex);
use POSIX ();
use Test::More;
use Test::Meshgate;

for my $tool (qw(openssl curl nghttp h2load)) {
    plan(skip_all => "$tool is not installed")
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}
plan(skip_all => 'curl has no HTTP/2') unless `curl --version` =~ /\bHTTP2\b/;

my $t = Test::Meshgate->new;
my $d = $t->testdir;

sub ossl {
    my ($args) = @_;
    system("openssl $args >>$d/openssl.log 2>&1") == 0
        or die "openssl $args failed:\n" . $t->read_file('openssl.log');
}
ossl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    . " -subj '/CN=meshgate h2 test CA' -days 2 -keyout $d/ca.key"
    . " -out $d/ca.crt");
ossl("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    . " -subj '/CN=www.test' -addext 'subjectAltName=DNS:www.test'"
    . " -keyout $d/www.key -out $d/www.csr");
ossl("x509 -req -in $d/www.csr -CA $d/ca.crt -CAkey $d/ca.key"
    . " -CAcreateserial -days 2 -copy_extensions copy -out $d/www.crt");

$t->run_backend(port => 8081, name => 'b1');
$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = (
    { name = "both"; listen = "127.0.0.1:%%PORT_8443%%"; routes = "r";
      access_log = "%%TESTDIR%%/access.log";
      tls = { certificates = ( { cert = "www.crt"; key = "www.key"; } );
              alpn = [ "h2", "http/1.1" ]; }; },
    { name = "h1only"; listen = "127.0.0.1:%%PORT_8444%%"; routes = "r";
      tls = { certificates = ( { cert = "www.crt"; key = "www.key"; } );
              alpn = [ "http/1.1" ]; }; },
    { name = "h2only"; listen = "127.0.0.1:%%PORT_8445%%"; routes = "r";
      tls = { certificates = ( { cert = "www.crt"; key = "www.key"; } );
              alpn = [ "h2" ]; }; } );
routes = { r = (
    { domains = [ "*" ]; path = "/direct";
      direct_response = { status = 200; body = "direct over tls\n"; }; },
    { domains = [ "*" ]; prefix = "/"; cluster = "c1"; } ); };
clusters = ( { name = "c1"; response_timeout = 30.0;
               endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); } );
EOF
$t->run;
my $port = port(8443);
my $ncmd = 0;

# cmd(@argv): stdout of a client run with a 90 s bound; stderr in $ERR.
our $ERR = '';
sub cmd {
    my @argv = @_;
    my $errf = "$d/cmd-" . ++$ncmd . '.err';
    my $pid = open(my $fh, '-|') // die "fork: $!\n";
    if ($pid == 0) {
        open STDERR, '>', $errf or POSIX::_exit(127);
        { no warnings 'exec'; exec 'timeout', '90', @argv; }
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh>;
    close $fh;
    $ERR = read_file($errf);
    return $out // '';
}

# curl(port => P, args => [...], path): { code, version, body, err }.
sub curl {
    my ($path, %o) = @_;
    my $p = $o{port} // $port;
    my $body = $o{file} // "$d/curl-" . ++$ncmd . '.body';
    my $w = cmd('curl', '-sS', '-v', '--max-time', '60', '--cacert',
        "$d/ca.crt", '--resolve', "www.test:$p:127.0.0.1", '-o', $body,
        '-w', '%{http_code} %{http_version}', @{$o{args} || []},
        "https://www.test:$p$path");
    my ($code, $ver) = split / /, $w;
    return { code => $code, version => $ver, err => $ERR,
        body => $o{file} ? undef : read_file($body) };
}

# ALPN h2 with curl and nghttp
{
    my $r = curl('/direct', args => [ '--http2' ]);
    is("$r->{code} $r->{version}", '200 2',
        'curl --http2 over TLS gets 200 with HTTP/2') or diag($r->{err});
    like($r->{err}, qr/ALPN: server accepted h2/, 'the server accepted h2');
    is($r->{body}, "direct over tls\n", 'with the body');

    $r = curl('/echo', args => [ '--http2' ]);
    is($r->{code}, 200, 'a proxied request over h2 and TLS');
    like($r->{body}, qr{^GET /echo HTTP/1\.1\r\n}, 'reaches the HTTP/1.1 '
        . 'upstream');
    like($r->{body}, qr/^X-Forwarded-Proto: https\r$/mi,
        'with X-Forwarded-Proto: https');
    like($r->{body}, qr/^Host: www\.test:$port\r$/mi,
        'and Host from :authority');

    my $out = cmd('nghttp', '-v', '-t', '10', "https://127.0.0.1:$port/direct");
    like($out, qr/The negotiated protocol: h2/, 'nghttp negotiates h2')
        or diag($out . $ERR);
    like($out, qr/^direct over tls$/m, 'and gets the body');
    like($out, qr/recv SETTINGS frame/, 'speaking HTTP/2 frames');
}

# ALPN http/1.1 on the same port
{
    my $r = curl('/direct', args => [ '--http1.1' ]);
    is("$r->{code} $r->{version}", '200 1.1',
        'an HTTP/1.1-only client (ALPN http/1.1) on the same port')
        or diag($r->{err});
    like($r->{err}, qr/ALPN: server accepted http\/1\.1/,
        'the server accepted http/1.1');
    $r = curl('/direct', args => [ '--http1.1', '--no-alpn' ]);
    is("$r->{code} $r->{version}", '200 1.1',
        'a client without ALPN speaks HTTP/1.1') or diag($r->{err});
    my $out = `openssl s_client -connect 127.0.0.1:$port -servername www.test -alpn h2,http/1.1 </dev/null 2>&1`;
    like($out, qr/^ALPN protocol: h2$/m, 'openssl s_client: h2 is preferred');
    $out = cmd('h2load', '--h1', '-n', '200', '-c', '4',
        "https://127.0.0.1:$port/direct");
    like($out, qr/Application protocol: http\/1\.1/,
        'h2load --h1 gets http/1.1');
    like($out, qr/requests: 200 total, 200 started, 200 done, 200 succeeded/,
        'and every request succeeds') or diag($out . $ERR);
}

# The listener's alpn list
{
    my $r = curl('/direct', port => port(8444), args => [ '--http2' ]);
    is("$r->{code} $r->{version}", '200 1.1',
        'alpn = [ "http/1.1" ]: curl --http2 falls back to HTTP/1.1')
        or diag($r->{err});
    $r = curl('/direct', port => port(8445), args => [ '--http2' ]);
    is("$r->{code} $r->{version}", '200 2', 'alpn = [ "h2" ]: h2 works')
        or diag($r->{err});
    $r = curl('/direct', port => port(8445), args => [ '--http1.1' ]);
    isnt($r->{code}, 200, 'alpn = [ "h2" ]: a client offering only '
        . 'http/1.1 is refused');
    like($r->{err}, qr/no application protocol|alert/i,
        'with the no_application_protocol alert') or diag($r->{err});
}

# Bodies over h2 and TLS
{
    my $n = 20 * 1000 * 1000;
    my $f = "$d/down.bin";
    my $r = curl("/bytes/$n", args => [ '--http2' ], file => $f);
    is("$r->{code} $r->{version}", '200 2', 'a 20 MB download over h2+TLS');
    my $want = sha1_hex(pattern_bytes($n));
    is(Digest::SHA->new(1)->addfile($f)->hexdigest, $want, 'arrives intact');
    $r = curl("/chunked/$n", args => [ '--http2' ], file => $f);
    is(Digest::SHA->new(1)->addfile($f)->hexdigest, $want,
        'a chunked one too');
    open my $fh, '>', $f or die;
    print $fh pattern_bytes($n);
    close $fh;
    $r = curl('/upload', args => [ '--http2', '--data-binary', "\@$f" ]);
    is($r->{body}, "bytes=$n sha1=$want", 'a 20 MB upload over h2+TLS '
        . 'arrives intact');
    unlink $f;
}

# Load and many streams
{
    my $out = cmd('h2load', '-n', '10000', '-c', '10', '-m', '10',
        "https://127.0.0.1:$port/direct");
    like($out, qr/Application protocol: h2/, 'h2load negotiates h2');
    like($out, qr/requests: 10000 total, 10000 started, 10000 done, 10000 succeeded, 0 failed, 0 errored, 0 timeout/,
        'h2load -n 10000 -c 10 -m 10 over TLS: every request succeeds')
        or diag($out . $ERR);
    $out = cmd('h2load', '-n', '2000', '-c', '4', '-m', '50',
        "https://127.0.0.1:$port/bytes/10000");
    like($out, qr/requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout/,
        'h2load -m 50 to the upstream over TLS: every request succeeds')
        or diag($out . $ERR);
    like($out, qr/status codes: 2000 2xx/, 'all 200');
}

# Frame-level client over TLS (t/lib/h2raw.py with H2RAW_TLS=1), if
# python3-h2 is there: back-pressure through TLS writes and rapid reset.
SKIP: {
    my $py = (grep { system("$_ -c 'import h2' >/dev/null 2>&1") == 0 }
        '/usr/bin/python3', 'python3')[0];
    skip 'no python3 with the h2 package (python3-h2)', 9 unless $py;
    my $h2raw = "$FindBin::Bin/lib/h2raw.py";
    local $ENV{H2RAW_TLS} = 1;
    my @workers = $t->worker_pids;
    my $big = 200 * 1024 * 1024;
    my $go = "$d/go";
    my $pid = $t->run_daemon($py, $h2raw, 'slowread', $port, "/bytes/$big",
        $go, 1);
    ok(waitfor(sub { $t->daemon_log($pid) =~ /^stalled /m }, 20),
        'a TLS client stops reading its socket during 200 MiB')
        or diag($t->daemon_log($pid));
    like($t->daemon_log($pid), qr/^alpn h2$/m, 'it speaks h2');
    my $rss = 0;
    my $stable = waitfor(sub {
        my $a = max_kb('VmRSS');
        select(undef, undef, undef, 0.5);
        $rss = max_kb('VmRSS');
        return $a == $rss;
    }, 10);
    cmp_ok($rss, '<', 32 * 1024 + Test::Meshgate::sanitizer_slack_kb(),
        'the worker holds under 32 MiB meanwhile')
        or diag("VmRSS $rss kB");
    open my $fh, '>', $go or die;
    close $fh;
    my $res = '';
    waitfor(sub {
        ($res) = $t->daemon_log($pid) =~ /^(result .*)$/m;
        return $res;
    }, 60);
    like($res // '', qr/received=$big pattern_ok=1 status=200/,
        'then all 200 MiB arrive intact over TLS') or diag($t->daemon_log($pid));
    $t->stop_daemons($pid);

    my $out = `timeout 60 $py $h2raw rapid_reset $port 5000 /delay/2000 2>&1`;
    like($out, qr/^goaway error=[1-9]\d* /m,
        'rapid reset over TLS: GOAWAY with an error') or diag($out);
    like($out, qr/^closed$/m, 'and the connection is closed');
    is(join(' ', $t->worker_pids), join(' ', @workers),
        'the same workers still run');
    my $r = curl('/direct', args => [ '--http2' ]);
    is("$r->{code} $r->{version}", '200 2', 'and serve h2 over TLS');
    my $hwm = max_kb('VmHWM');
    cmp_ok($hwm, '<', 32 * 1024 + Test::Meshgate::sanitizer_slack_kb(),
        'no worker peaked above 32 MiB')
        or diag("VmHWM $hwm kB");
}

# The access log knows the protocol of each.
{
    my @all;
    waitfor(sub {
        @all = split /\n/, $t->read_file('access.log');
        return grep({ m{"GET /direct HTTP/2\.0" 200 } } @all)
            && grep { m{"GET /direct HTTP/1\.1" 200 } } @all;
    }, 5);
    ok(grep({ m{ both "GET /direct HTTP/2\.0" 200 } } @all),
        'h2 over TLS is logged as HTTP/2.0');
    ok(grep({ m{ both "GET /direct HTTP/1\.1" 200 } } @all),
        'http/1.1 over TLS as HTTP/1.1');
}

$t->stop_and_check;
done_testing();

sub max_kb {
    my ($field) = @_;
    my $max = 0;
    for my $pid ($t->worker_pids) {
        my $s = read_file("/proc/$pid/status");
        $max = $1 if $s =~ /^$field:\s+(\d+) kB/m && $1 > $max;
    }
    return $max;
}
