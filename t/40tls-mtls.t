#!/usr/bin/perl

# Client certificates and TLS to upstreams. verify_client = "required":
# no handshake without a certificate from client_ca, 200 with one.
# "optional": a route with require_client_cert answers 403 without a
# verified certificate and 200 with one; other routes serve everyone.
# Upstream: a cluster with tls reaches nginx over TLS, verifying it against
# the test CA with SNI; the wrong CA fails with a 502. Certificates are
# made with openssl at test time.

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
$t->plan(14);

my $d = $t->testdir;

sub ossl {
    my ($args) = @_;
    system("openssl $args >>$d/openssl.log 2>&1") == 0
        or die "openssl $args failed:\n" . $t->read_file('openssl.log');
}
sub leaf {
    my ($name, $cn, $san, $ca) = @_;
    $ca //= 'ca';
    my $ext = $san ? " -addext 'subjectAltName=$san'" : '';
    ossl("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=$cn'"
        . "$ext -keyout $d/$name.key -out $d/$name.csr");
    ossl("x509 -req -in $d/$name.csr -CA $d/$ca.crt -CAkey $d/$ca.key"
        . " -CAcreateserial -days 2 -copy_extensions copy -out $d/$name.crt");
}
for my $ca (qw(ca other)) {
    ossl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
        . " -subj '/CN=test $ca' -days 2 -keyout $d/$ca.key -out $d/$ca.crt");
}
leaf('www', 'www.test', 'DNS:www.test');
leaf('client', 'client one');
leaf('stranger', 'stranger', undef, 'other');
leaf('upstream', 'upstream.test', 'DNS:upstream.test');

my $nginx = $t->run_nginx(<<"EOF");
    server {
        listen 127.0.0.1:%%PORT_8082%% ssl;
        server_name upstream.test;
        ssl_certificate $d/upstream.crt;
        ssl_certificate_key $d/upstream.key;
        location / { return 200 "nginx over tls, proto \$http_x_forwarded_proto\\n"; }
    }
EOF

$t->run_backend(port => 8081, name => 'b1');
$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = (
    { name = "required"; listen = "127.0.0.1:%%PORT_8443%%"; routes = "r";
      tls = { certificates = ( { cert = "www.crt"; key = "www.key"; } );
              client_ca = "ca.crt"; verify_client = "required"; }; },
    { name = "optional"; listen = "127.0.0.1:%%PORT_8444%%"; routes = "r";
      tls = { certificates = ( { cert = "www.crt"; key = "www.key"; } );
              client_ca = "ca.crt"; verify_client = "optional"; }; } );
routes = { r = (
    { domains = [ "*" ]; prefix = "/private";
      require_client_cert = true;
      direct_response = { status = 200; body = "private\n"; }; },
    { domains = [ "*" ]; prefix = "/upstream-good"; cluster = "tls_good"; },
    { domains = [ "*" ]; prefix = "/upstream-wrong-ca"; cluster = "tls_wrong_ca"; },
    { domains = [ "*" ]; prefix = "/";
      direct_response = { status = 200; body = "public\n"; }; } ); };
clusters = (
    { name = "tls_good"; connect_timeout = 2.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } );
      tls = { ca = "ca.crt"; sni = "upstream.test"; }; },
    { name = "tls_wrong_ca"; connect_timeout = 2.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } );
      tls = { ca = "other.crt"; sni = "upstream.test"; }; } );
EOF
$t->run;

# curl(port, cert, path): "CODE body" or the error text.
sub curl {
    my ($p, $cert, $path) = @_;
    my $c = $cert ? "--cert $d/$cert.crt --key $d/$cert.key" : '';
    my $out = `curl -sS --max-time 10 --http1.1 --cacert $d/ca.crt $c --resolve www.test:$p:127.0.0.1 -w ' %{http_code}' https://www.test:$p$path 2>&1`;
    $out =~ s/\n / /;
    return $out;
}

my $req = port(8443);
my $opt = port(8444);

unlike(curl($req, undef, '/'), qr/ 200$/,
    'required: no client certificate, no response');
# TLS 1.2 fails in the handshake (35); with TLS 1.3 the client finishes
# first and then finds the connection closed by the alert (55, 56).
like(curl($req, undef, '/'), qr/^curl: \((35|55|56)\)/m,
    'the connection fails at the TLS level, before any HTTP');
is(curl($req, 'client', '/'), 'public 200',
    'required: a certificate from client_ca gets 200');
is(curl($req, 'client', '/private'), 'private 200',
    'required: and passes require_client_cert');
unlike(curl($req, 'stranger', '/'), qr/ 200$/,
    'required: a certificate from another CA fails');

is(curl($opt, undef, '/'), 'public 200',
    'optional: no certificate still gets a public route');
like(curl($opt, undef, '/private'), qr/ 403$/,
    'optional: require_client_cert answers 403 without a certificate');
is(curl($opt, 'client', '/private'), 'private 200',
    'optional: and 200 with a verified one');
unlike(curl($opt, 'stranger', '/private'), qr/private 200$/,
    'optional: a certificate that does not verify gets no private page');

SKIP: {
    skip 'nginx is not installed', 5 unless $nginx;
    is(curl($req, 'client', '/upstream-good'),
        'nginx over tls, proto https 200',
        'upstream TLS verified against the CA with SNI: 200');
    my $since = $t->log_offset;
    like(curl($req, 'client', '/upstream-wrong-ca'), qr/ 50[23]$/,
        'an upstream whose certificate another CA signed: 502/503');
    ok($t->waitforlog(qr/TLS handshake with upstream.*certificate verify/i,
        since => $since, timeout => 2),
        'the log says why (certificate verification)');
    like($t->read_file("$d/nginx/error.log"),
        qr/SSL_do_handshake\(\) failed|alert/i,
        'nginx saw the handshake refused by the client');
    is(curl($req, 'client', '/upstream-good'),
        'nginx over tls, proto https 200',
        'and the good cluster still works after that');
}
