#!/usr/bin/perl

# TLS session resumption with tickets shared by all workers: a session
# from one connection resumes on the following ones whichever of the two
# workers takes them, with TLS 1.2 and 1.3, also after a reload (new
# workers, same ticket keys). session_tickets = false resumes nothing.
# Certificates are made with openssl at test time.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Meshgate;

my $t = Test::Meshgate->new;
plan(skip_all => 'no openssl command')
    if system('openssl version >/dev/null 2>&1') != 0;
$t->plan(11);

my $d = $t->testdir;

sub ossl {
    my ($args) = @_;
    system("openssl $args >>$d/openssl.log 2>&1") == 0
        or die "openssl $args failed:\n" . $t->read_file('openssl.log');
}
ossl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    . " -subj '/CN=meshgate test CA' -days 2 -keyout $d/ca.key -out $d/ca.crt");
ossl("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=www.test'"
    . " -addext 'subjectAltName=DNS:www.test' -keyout $d/www.key -out $d/www.csr");
ossl("x509 -req -in $d/www.csr -CA $d/ca.crt -CAkey $d/ca.key"
    . " -CAcreateserial -days 2 -copy_extensions copy -out $d/www.crt");

$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = (
    { name = "tls"; listen = "127.0.0.1:%%PORT_8443%%"; routes = "r";
      tls = { certificates = ( { cert = "www.crt"; key = "www.key"; } ); }; },
    { name = "noticket"; listen = "127.0.0.1:%%PORT_8444%%"; routes = "r";
      tls = { certificates = ( { cert = "www.crt"; key = "www.key"; } );
              session_tickets = false; }; } );
routes = { r = ( { domains = [ "*" ]; prefix = "/";
                   direct_response = { status = 200; body = "resumed?\n"; }; } ); };
EOF
$t->run;

my $n = 0;

# One connection with openssl s_client: a request with "Connection: close"
# is sent and the response read to the end (-ign_eof), so TLS 1.3 tickets,
# which come after the handshake, are saved too. Returns "New" or "Reused"
# and whether the response was a 200.
sub connect_once {
    my (%o) = @_;
    my $p = port($o{port} || 8443);
    my $args = "-connect 127.0.0.1:$p -servername www.test -CAfile $d/ca.crt"
        . " -ign_eof $o{version}";
    $args .= " -sess_in $o{in}" if $o{in};
    $args .= " -sess_out $o{out}" if $o{out};
    my $req = "$d/req";
    $t->write_file('req', "GET / HTTP/1.1\r\nHost: www.test\r\n"
        . "Connection: close\r\n\r\n") unless -f $req;
    my $out = `timeout 10 openssl s_client $args <$req 2>&1`;
    my $how = $out =~ /^(New|Reused), TLS/m ? $1 : 'failed';
    return ($how, $out =~ /^HTTP\/1\.1 200/m ? 1 : 0, $out);
}

for my $v ([ 'TLS 1.2', '-tls1_2' ], [ 'TLS 1.3', '-tls1_3' ]) {
    my ($name, $flag) = @$v;
    my $sess = "$d/sess" . ++$n;
    my ($how, $ok, $out) = connect_once(version => $flag, out => $sess);
    ok($how eq 'New' && $ok && -s $sess,
        "$name: a full handshake saves a session") or diag($out);

    # Ten connections: with two workers both are all but certain to take
    # some; every one must resume.
    my @how;
    for my $i (1 .. 10) {
        my $next = "$sess.$i";
        my ($h, $okr) = connect_once(version => $flag, in => $sess,
            out => $next);
        push @how, $okr ? $h : "$h (no 200)";
        # TLS 1.3 tickets are meant for one use: take the newest.
        $sess = $next if $flag eq '-tls1_3' && -s $next;
    }
    is(join(',', @how), join(',', ('Reused') x 10),
        "$name: ten later connections all resume, on either worker");
}

# A reload starts new workers; the ticket keys stay.
my $sess = "$d/sess-reload";
my ($how, $ok, $out) = connect_once(version => '-tls1_2', out => $sess);
ok($how eq 'New' && -s $sess, 'a session before the reload') or diag($out);
my @old = $t->worker_pids;
is($t->reload, 1, 'reload');
ok(waitfor(sub { my @w = $t->worker_pids;
    !grep { my $o = $_; grep { $_ == $o } @w } @old }, 10),
    'the old workers are gone');
($how) = connect_once(version => '-tls1_2', in => $sess);
is($how, 'Reused', 'the session resumes on the new workers');
($how) = connect_once(version => '-tls1_3', out => "$d/sess13-reload");
($how) = connect_once(version => '-tls1_3', in => "$d/sess13-reload");
is($how, 'Reused', 'a TLS 1.3 session after the reload resumes too');

# session_tickets = false: no ticket, and no session id to resume by
# (there is no session cache), so s_client may have nothing to save.
for my $v ([ 'TLS 1.2', '-tls1_2' ], [ 'TLS 1.3', '-tls1_3' ]) {
    my ($name, $flag) = @$v;
    my $f = "$d/sess-none" . ++$n;
    ($how, $ok, $out) = connect_once(port => 8444, version => $flag,
        out => $f);
    if (-s $f) {
        ($how, $ok, $out) = connect_once(port => 8444, version => $flag,
            in => $f);
    }
    ok($how eq 'New' && $ok,
        "session_tickets = false: no resumption ($name)") or diag($out);
}
