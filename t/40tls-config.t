#!/usr/bin/perl

# TLS configuration mistakes under `meshgate -t`: each is refused with exit
# status 1 and "FILE:LINE: reason" naming the path involved; a good TLS
# configuration passes. Certificates are made with openssl at test time.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Meshgate;

my $t = Test::Meshgate->new;
plan(skip_all => 'no openssl command') if system('openssl version >/dev/null 2>&1') != 0;
$t->plan(26);

my $d = $t->testdir;

# A test CA, a leaf it signs, a leaf of another CA, a non-PEM file and an
# encrypted key.
sub ossl {
    my ($args) = @_;
    system("openssl $args >>$d/openssl.log 2>&1") == 0
        or die "openssl $args failed:\n" . $t->read_file('openssl.log');
}
sub leaf {
    my ($name, $cn, $ca) = @_;
    ossl("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=$cn'"
        . " -addext 'subjectAltName=DNS:$cn' -keyout $d/$name.key -out $d/$name.csr");
    ossl("x509 -req -in $d/$name.csr -CA $d/$ca.crt -CAkey $d/$ca.key"
        . " -CAcreateserial -days 2 -copy_extensions copy -out $d/$name.crt");
}
for my $ca (qw(ca other)) {
    ossl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
        . " -subj '/CN=test $ca' -days 2 -keyout $d/$ca.key -out $d/$ca.crt");
}
leaf('www', 'www.test', 'ca');
leaf('stranger', 'stranger.test', 'other');
ossl("pkey -in $d/www.key -aes128 -passout pass:secret -out $d/enc.key");
$t->write_file('garbage.pem', "not a certificate\n");

my $n = 0;

# check($text): writes it as a fresh main file, runs meshgate -t on it;
# returns (exit status, stderr, path of the file).
sub check {
    my ($text) = @_;
    my $conf = $t->write_file('c' . ++$n . '/meshgate.conf', $text);
    my $r = $t->run_binary('-t', '-c', $conf);
    return ($r->{status}, $r->{stderr}, $conf);
}

# The listener in each case; @TLS@ is replaced by the tls group.
my $base = <<'EOF';
routes = { r = ( { domains = [ "*" ]; prefix = "/";
                   direct_response = { status = 200; }; } ); };
listeners = ( { name = "tls"; listen = "127.0.0.1:%%PORT_8443%%";
                routes = "r";
@TLS@ } );
EOF

sub tls_conf {
    my ($tls) = @_;
    (my $c = $base) =~ s/\@TLS\@/$tls/;
    return $c;
}

my $good = qq{{ cert = "$d/www.crt"; key = "$d/www.key"; }};

my ($st, $err, $conf) = check(tls_conf(<<"EOF"));
  tls = { certificates = ( $good );
          client_ca = "$d/ca.crt"; verify_client = "optional"; };
EOF
is($st, 0, 'a good TLS listener passes -t') or diag($err);

my @cases = (
    [ 'an unreadable cert',
      qq|  tls = { certificates = ( { cert = "$d/missing.crt";\n|
      . qq|                             key = "$d/www.key"; } ); };|,
      5, qr/cert "\Q$d\E\/missing\.crt": No such file or directory/ ],
    [ 'an unreadable key',
      qq|  tls = { certificates = ( { cert = "$d/www.crt";\n|
      . qq|                             key = "$d/missing.key"; } ); };|,
      6, qr/key "\Q$d\E\/missing\.key": No such file or directory/ ],
    [ 'a key that does not match its cert',
      qq|  tls = { certificates = ( { cert = "$d/www.crt";\n|
      . qq|                             key = "$d/stranger.key"; } ); };|,
      6, qr/key "\Q$d\E\/stranger\.key" does not match cert "\Q$d\E\/www\.crt"/ ],
    [ 'a cert that is not PEM',
      qq|  tls = { certificates = ( { cert = "$d/garbage.pem";\n|
      . qq|                             key = "$d/www.key"; } ); };|,
      5, qr/cert "\Q$d\E\/garbage\.pem": no start line/ ],
    [ 'an encrypted key (never a password prompt)',
      qq|  tls = { certificates = ( { cert = "$d/www.crt";\n|
      . qq|                             key = "$d/enc.key"; } ); };|,
      6, qr/key "\Q$d\E\/enc\.key": .*not\s+encrypted/ ],
    [ 'an unknown protocol',
      qq|  tls = { certificates = ( $good );\n|
      . qq|          protocols = [ "TLSv1.2", "TLSv1.0" ]; };|,
      6, qr/unknown protocol "TLSv1\.0"/ ],
    [ 'a bad cipher string',
      qq|  tls = { certificates = ( $good );\n|
      . qq|          ciphers = "ECDHE+AESGCM:NO-SUCH-CIPHER"; };|,
      6, qr/ciphers "ECDHE\+AESGCM:NO-SUCH-CIPHER": "NO-SUCH-CIPHER" matches no TLS 1\.2 cipher/ ],
    [ 'an unreadable client_ca',
      qq|  tls = { certificates = ( $good );\n|
      . qq|          client_ca = "$d/missing-ca.crt"; verify_client = "required"; };|,
      6, qr/client_ca "\Q$d\E\/missing-ca\.crt": No such file or directory/ ],
    [ 'verify_client without client_ca',
      qq|  tls = { certificates = ( $good );\n|
      . qq|          verify_client = "required"; };|,
      6, qr/verify_client = "required" needs client_ca/ ],
    [ 'h2c together with tls',
      qq|  tls = { certificates = ( $good ); };\n  h2c = true;|,
      6, qr/h2c = true \(cleartext HTTP\/2\) cannot be used with tls/ ],
);
for my $c (@cases) {
    my ($name, $tls, $line, $re) = @$c;
    ($st, $err, $conf) = check(tls_conf($tls));
    is($st, 1, "$name exits 1");
    like($err, qr/^\Q$conf\E:$line: $re/m,
        "$name is reported with file, line and path") or diag($err);
}

# Several mistakes: all reported in one run.
($st, $err, $conf) = check(tls_conf(<<"EOF"));
  tls = { certificates = ( { cert = "$d/missing.crt"; key = "$d/www.key"; } );
          protocols = [ "SSLv3" ]; }; } ,
  { name = "up"; listen = "127.0.0.1:%%PORT_8444%%"; routes = "r";
EOF
my @lines = grep { /^\Q$conf\E:\d+: / } split /\n/, $err;
ok(@lines >= 2 && $err =~ /missing\.crt/ && $err =~ /SSLv3/,
    'several TLS mistakes are all reported in one run') or diag($err);
# Upstream HTTP/2 in both forms passes; each form insists on its transport.
for my $proto (qw(h2c h2)) {
    my $tls = $proto eq 'h2' ? qq|tls = { ca = "$d/ca.crt"; };| : '';
    my ($pst, $perr) = check(<<"EOF");
routes = { r = ( { domains = [ "*" ]; prefix = "/"; cluster = "up"; } ); };
listeners = ( { name = "l"; listen = "127.0.0.1:%%PORT_8444%%"; routes = "r"; } );
clusters = ( { name = "up"; keepalive_interval = 0.0;
               protocol = "$proto"; $tls
               endpoints = ( { address = "127.0.0.1:9"; } ); } );
EOF
    is($pst, 0, "cluster protocol \"$proto\" passes -t") or diag($perr);
    my $wrong = $tls ? '' : qq|tls = { ca = "$d/ca.crt"; };|;
    my ($bst, $berr, $bconf) = check(<<"EOF");
routes = { r = ( { domains = [ "*" ]; prefix = "/"; cluster = "up"; } ); };
listeners = ( { name = "l"; listen = "127.0.0.1:%%PORT_8444%%"; routes = "r"; } );
clusters = ( { name = "up";
               protocol = "$proto"; $wrong
               endpoints = ( { address = "127.0.0.1:9"; } ); } );
EOF
    like($berr, $proto eq 'h2' ? qr/^\Q$bconf\E:4: protocol "h2" needs tls/m
                               : qr/^\Q$bconf\E:4: protocol "h2c" is cleartext/m,
        "$proto with the wrong transport is refused with file:line") or diag($berr);
}

