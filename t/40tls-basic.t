#!/usr/bin/perl

# TLS termination end to end: curl over https gets a direct response and a
# proxied one (the backend sees X-Forwarded-Proto: https), with TLS 1.2 and
# 1.3; ALPN picks http/1.1 or h2; a client that does not trust our CA and a
# cleartext request on the TLS port are refused without harming the worker.
# Certificates are made with openssl at test time.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Meshgate;

my $t = Test::Meshgate->new;
for my $tool (qw(openssl curl)) {
    plan(skip_all => "no $tool command")
        if system("$tool --version >/dev/null 2>&1") != 0
        && system("$tool version >/dev/null 2>&1") != 0;
}
$t->plan(15);

my $d = $t->testdir;

sub ossl {
    my ($args) = @_;
    system("openssl $args >>$d/openssl.log 2>&1") == 0
        or die "openssl $args failed:\n" . $t->read_file('openssl.log');
}
sub leaf {
    my ($name, $cn, $san) = @_;
    ossl("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=$cn'"
        . " -addext 'subjectAltName=$san' -keyout $d/$name.key -out $d/$name.csr");
    ossl("x509 -req -in $d/$name.csr -CA $d/ca.crt -CAkey $d/ca.key"
        . " -CAcreateserial -days 2 -copy_extensions copy -out $d/$name.crt");
}
ossl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    . " -subj '/CN=meshgate test CA' -days 2 -keyout $d/ca.key -out $d/ca.crt");
leaf('www', 'www.test', 'DNS:www.test');

$t->run_backend(port => 8081, name => 'b1');
$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = ( { name = "tls"; listen = "127.0.0.1:%%PORT_8443%%";
                routes = "r";
                tls = { certificates = ( { cert = "www.crt"; key = "www.key"; } ); }; } );
routes = { r = (
    { domains = [ "*" ]; path = "/direct";
      direct_response = { status = 200; body = "direct over tls\n"; }; },
    { domains = [ "*" ]; prefix = "/"; cluster = "c1"; } ); };
clusters = ( { name = "c1";
               endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); } );
EOF
$t->run;

my $port = port(8443);

# curl(@args, $path): runs curl against www.test on our port; returns
# (status line "CODE VERSION", body, stderr).
sub curl {
    my $path = pop;
    my @args = @_;
    my $n = ++$t->{curl_n};
    my $cmd = join ' ', 'curl -sS --max-time 10 --cacert', "$d/ca.crt",
        '--resolve', "www.test:$port:127.0.0.1", @args,
        "-o $d/curl-$n.body -w '%{http_code} %{http_version}'",
        "'https://www.test:$port$path' 2>$d/curl-$n.err";
    my $out = `$cmd`;
    return ($out, $t->read_file("curl-$n.body"), $t->read_file("curl-$n.err"));
}

my ($st, $body, $err) = curl('--http1.1', '/direct');
is($st, '200 1.1', 'https: a direct response') or diag($err);
is($body, "direct over tls\n", 'with its body');

($st, $body, $err) = curl('--http1.1', '/echo');
is($st, '200 1.1', 'https: a response from the backend') or diag($err);
like($body, qr/^X-Forwarded-Proto: https\r?$/mi,
    'the backend is told the client used https');

($st, $body, $err) = curl('--http1.1 --tlsv1.2 --tls-max 1.2 -v', '/direct');
is($st, '200 1.1', 'TLS 1.2 works') or diag($err);
like($err, qr/SSL connection using TLSv1\.2 \/ ECDHE-\S+-(AES\d+-GCM|CHACHA20)/,
    'TLS 1.2 uses ECDHE with an AEAD cipher');

($st, $body, $err) = curl('--http1.1 --tlsv1.3 -v', '/direct');
is($st, '200 1.1', 'TLS 1.3 works') or diag($err);
like($err, qr/SSL connection using TLSv1\.3/, 'and is TLS 1.3');

($st, $body, $err) = curl('--http2', '/direct');
is($st, '200 2', 'curl --http2 negotiates h2 by ALPN and gets 200')
    or diag($err);

# ALPN as openssl s_client sees it.
sub s_client {
    my ($args) = @_;
    return `openssl s_client -connect 127.0.0.1:$port -servername www.test $args </dev/null 2>&1`;
}
like(s_client('-alpn http/1.1'), qr/^ALPN protocol: http\/1\.1$/m,
    'ALPN: a client offering http/1.1 gets http/1.1');
like(s_client('-alpn h2,http/1.1'), qr/^ALPN protocol: h2$/m,
    'ALPN: h2 is preferred when offered');

# A client without our CA refuses the certificate.
my $out = `curl -sS --max-time 10 --resolve www.test:$port:127.0.0.1 -o /dev/null -w '%{http_code}' https://www.test:$port/direct 2>&1`;
like($out, qr/certificate|SSL/i, 'a client that does not trust the CA fails');

# Cleartext HTTP on the TLS port is not an HTTP request; the worker lives.
my $r = http_get('/direct', port => $port, timeout => 3, quiet => 1);
unlike($r // '', qr/^HTTP\/1\.1 200/, 'cleartext HTTP on a TLS port gets no '
    . 'HTTP response');
($st) = curl('--http1.1', '/direct');
is($st, '200 1.1', 'and TLS still works afterwards');
unlike($t->log, qr/exited on signal/, 'no worker died');
