#!/usr/bin/perl

# Certificates by SNI on one TLS listener: an exact name, a wildcard that
# covers one label, and the first certificate as the default for no SNI or
# an unknown name. curl verifies the chosen certificate against the test
# CA. Certificates are made with openssl at test time.

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
$t->plan(12);

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
leaf('default', 'default.test', 'DNS:default.test');
leaf('a', 'a.test', 'DNS:a.test,DNS:alias.test');
leaf('wild', 'wild.test', 'DNS:*.wild.test');

$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = ( { name = "tls"; listen = "127.0.0.1:%%PORT_8443%%";
                routes = "r";
                tls = { certificates = (
                    { cert = "default.crt"; key = "default.key"; },
                    { cert = "a.crt"; key = "a.key"; },
                    { cert = "wild.crt"; key = "wild.key"; } ); }; } );
routes = { r = ( { domains = [ "*" ]; prefix = "/";
                   direct_response = { status = 200; body = "sni ok\n"; }; } ); };
EOF
$t->run;

my $port = port(8443);

# The subject CN of the certificate served for SNI |name| (none: undef).
sub served_cn {
    my ($name) = @_;
    my $sn = defined $name ? "-servername $name" : '-noservername';
    my $out = `openssl s_client -connect 127.0.0.1:$port $sn </dev/null 2>/dev/null | openssl x509 -noout -subject 2>&1`;
    return $out =~ /CN\s*=\s*([^,\/\n]+)/ ? $1 : "none ($out)";
}

is(served_cn('a.test'), 'a.test', 'SNI a.test gets the a.test certificate');
is(served_cn('alias.test'), 'a.test', 'its second name too');
is(served_cn('A.TEST'), 'a.test', 'SNI compares without case');
is(served_cn('x.wild.test'), 'wild.test',
    'SNI x.wild.test gets the *.wild.test certificate');
is(served_cn('y.x.wild.test'), 'default.test',
    'a wildcard covers one label only: two get the default');
is(served_cn('wild.test'), 'default.test',
    'the wildcard does not cover its parent name');
is(served_cn('unknown.test'), 'default.test',
    'an unknown name gets the first (default) certificate');
is(served_cn(undef), 'default.test', 'no SNI gets the default certificate');

# curl checks the name itself: each of these verifies.
for my $host (qw(a.test x.wild.test default.test)) {
    my $out = `curl -sS --max-time 10 --http1.1 --cacert $d/ca.crt --resolve $host:$port:127.0.0.1 https://$host:$port/ 2>&1`;
    is($out, "sni ok\n", "curl verifies the certificate served for $host");
}
my $out = `curl -sS --max-time 10 --http1.1 --cacert $d/ca.crt --resolve other.test:$port:127.0.0.1 https://other.test:$port/ 2>&1`;
like($out, qr/SSL|certificate|subject/i,
    'an unknown name gets the default certificate, which curl rejects');
