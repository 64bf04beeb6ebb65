#!/usr/bin/perl

# Active health checks: they run once per instance, in the control process
# (not once per worker), and once for a region's front proxy that several
# clusters share; an HTTP check fails on a status outside the set
# and a TCP check on a refused connection, and recovers when the endpoint
# does; a reload and a crash of the control process keep the verdicts;
# `meshgate -t` refuses bad health_check values; workers route around an
# unhealthy endpoint; HTTP/2 (h2c, h2 over TLS) endpoints are checked in
# HTTP/2 and TLS failures count.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Test::Meshgate;

my $t = Test::Meshgate->new;
my $dir = $t->testdir;

my $HC = 'interval = 0.3; timeout = 0.25; healthy_threshold = 1; '
    . 'unhealthy_threshold = 2;';

# A backend whose /healthz answers 503 while every other path gets 200:
# it serves traffic but fails its check, so only the health check can keep
# requests away from it. One connection at a time, closed after each
# answer.
my $sick_backend = $t->write_file('sick-backend.pl', <<'EOF');
use strict;
use warnings;
use IO::Select;
use IO::Socket::INET;

my ($port, $name) = @ARGV;
my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
    LocalPort => $port, Listen => 128, ReuseAddr => 1, Proto => 'tcp')
    or die "listen $port: $!\n";
my $ppid = getppid();
my $sel = IO::Select->new($srv);
while (getppid() == $ppid) {
    next unless $sel->can_read(0.5);
    my $c = $srv->accept or next;
    my $head = '';
    my $cs = IO::Select->new($c);
    while ($head !~ /\r\n\r\n/ && $cs->can_read(2)) {
        sysread($c, $head, 4096, length $head) or last;
    }
    my ($path) = $head =~ m{^[A-Z]+ (\S+)};
    my $st = defined $path && $path eq '/healthz' ? 503 : 200;
    my $body = "$name\n";
    syswrite($c, "HTTP/1.1 $st X\r\nX-Backend: $name\r\n"
        . 'Content-Length: ' . length($body) . "\r\n"
        . "Connection: close\r\n\r\n$body");
    close $c;
}
EOF

$t->write_conf(<<"EOF");
gateway = { workers = 4; drain_timeout = 1.0; log_level = "info"; };
regions = ( { name = "far"; front_proxy = "127.0.0.1:%%PORT_8086%%";
              protocol = "http/1.1";
              health_check = { path = "/healthz"; $HC }; } );
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; } );
routes = { mesh = ( { domains = [ "pair" ]; prefix = "/"; cluster = "pair"; } ); };
clusters = (
    { name = "good"; health_check = { path = "/healthz"; $HC };
      out_of_zone = [ "far" ];
      endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); },
    { name = "sick"; health_check = { path = "/status/503"; $HC };
      out_of_zone = [ "far" ];
      endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } ); },
    { name = "tcp"; health_check = { type = "tcp"; $HC };
      endpoints = ( { address = "127.0.0.1:%%PORT_8083%%"; } ); },
    { name = "pair"; retry = { attempts = 1; };
      health_check = { path = "/healthz"; $HC };
      endpoints = ( { address = "127.0.0.1:%%PORT_8084%%"; },
                    { address = "127.0.0.1:%%PORT_8085%%"; } ); } );
EOF

my $good = $t->run_backend(port => 8081, name => 'good', verbose => 1);
$t->run_backend(port => 8082, name => 'sick');
$t->run_backend(port => 8084, name => 'pair-ok');
my $far = $t->run_backend(port => 8086, name => 'far', verbose => 1);
$t->run_daemon($^X, $sick_backend, port(8085), 'pair-sick');
waitforsocket('127.0.0.1:' . port(8085)) or die "sick backend did not start\n";
$t->run;

my ($p1, $p2, $p3, $p4, $p5, $p6) = map { port($_) } 8081 .. 8086;

# The checks backend |pid| (named |name|) has received so far.
sub checks_seen {
    my ($pid, $name) = @_;
    ($pid, $name) = ($good, 'good') unless $pid;
    my @l = $t->daemon_log($pid) =~ m{^\[$name \d+\] GET /healthz }mg;
    return scalar @l;
}

sub control_pids {
    return grep { Test::Meshgate::proc_title($_) =~ /^meshgate: control /
    } $t->worker_pids;
}

sub transitions {
    my ($since) = @_;
    return grep { /health check: .* is now (?:un)?healthy/ }
        split /\n/, $t->log(since => $since);
}

###########################################################################
# (e) One control process per instance, beside the 4 workers.

my @ctl;
ok(waitfor(sub { (@ctl = control_pids()) == 1 }, 5),
    'one control process runs') or diag("control: @ctl");
like(Test::Meshgate::proc_title($ctl[0] // 0),
    qr/^meshgate: control \(gen 1\)$/, 'its title names it and its generation');
ok(waitfor(sub { $t->worker_pids == 5 }, 5),
    'the master has 4 workers and the control process as children');

###########################################################################
# (a) Checks run once per interval, not once per worker.

ok($t->waitforlog(qr/endpoint 127\.0\.0\.1:$p1 of cluster good is now healthy/),
    'a: the endpoint that answers 200 is healthy');
ok($t->waitforlog(qr/health check: region far front proxy 127\.0\.0\.1:$p6 is now healthy/),
    'a: the front proxy of region far is healthy');
my $before = checks_seen();
my $far_before = checks_seen($far, 'far');
my $t0 = time;
sleep 2;    # a measurement window, not a wait for a condition
my $n = checks_seen() - $before;
my $far_n = checks_seen($far, 'far') - $far_before;
my $window = time - $t0;
cmp_ok($n, '>=', 4, "a: the backend saw the check in 2 s ($n times)");
cmp_ok($n * 0.3 / $window, '<=', 1.5,
    'a: about one check per interval, not one per worker (4 would give ~27)')
    or diag("$n checks in 2 s");
cmp_ok($far_n, '>=', 4, "a: the front proxy saw its check ($far_n times)");
cmp_ok($far_n * 0.3 / $window, '<=', 1.5,
    'a: the front proxy two clusters reach is checked once per interval')
    or diag("$far_n checks in 2 s");
is(scalar(() = $t->log =~ /region far front proxy .* is now/g), 1,
    'a: its verdict is logged once, not once per cluster');

###########################################################################
# (b) An HTTP check on a path answering 503.

ok($t->waitforlog(qr/health check: endpoint 127\.0\.0\.1:$p2 of cluster sick is now unhealthy \(status 503\)/),
    'b: a check answered with 503 makes the endpoint unhealthy, and the '
    . 'log says why');

###########################################################################
# (c) A TCP check on a closed port, then a listener there.

ok($t->waitforlog(qr/health check: endpoint 127\.0\.0\.1:$p3 of cluster tcp is now unhealthy \(connect refused\)/),
    'c: a TCP check on a closed port makes the endpoint unhealthy');
my $since = $t->log_offset;
$t->run_backend(port => 8083, name => 'tcp');
ok($t->waitforlog(qr/health check: endpoint 127\.0\.0\.1:$p3 of cluster tcp is now healthy/,
    since => $since), 'c: a listener on that port makes it healthy again');

###########################################################################
# Routing: requests avoid the endpoint that fails its check.

ok($t->waitforlog(qr/endpoint 127\.0\.0\.1:$p5 of cluster pair is now unhealthy \(status 503\)/),
    'the endpoint whose /healthz answers 503 is unhealthy');
ok($t->waitforlog(qr/endpoint 127\.0\.0\.1:$p4 of cluster pair is now healthy/),
    'its neighbour is healthy');
my %who;
for (1 .. 20) {
    my $r = parse_response(http_get('/x', host => 'pair'));
    $who{$r->{status} == 200 ? $r->{headers}{'x-backend'} // 'none'
        : "status $r->{status}"}++;
}
is_deeply(\%who, { 'pair-ok' => 20 },
    'all 20 requests reach the healthy endpoint');

###########################################################################
# (d) A reload keeps the verdicts.

$since = $t->log_offset;
is($t->reload, 1, 'd: the reload starts generation 2');
ok(waitfor(sub {
    my @c = control_pids();
    return @c == 1 && Test::Meshgate::proc_title($c[0]) =~ /\(gen 2\)/;
}, 5), 'd: generation 2 has its control process, and only it');
like($t->log(since => $since),
    qr/control process \(pid \d+, generation 1\) exited with code 0/,
    'd: the old control process exited');
$before = checks_seen();
ok(waitfor(sub { checks_seen() >= $before + 4 }, 5),
    'd: the new control process checks');
is(join("\n", transitions($since)), '',
    'd: no endpoint changed state across the reload');

###########################################################################
# (e) The control process comes back after SIGKILL, with the verdicts.

@ctl = control_pids();
$since = $t->log_offset;
kill 'KILL', $ctl[0];
my @new;
ok(waitfor(sub {
    @new = control_pids();
    return @new == 1 && $new[0] != $ctl[0];
}, 5), 'e: the master starts a new control process after SIGKILL');
like(Test::Meshgate::proc_title($new[0] // 0), qr/^meshgate: control \(gen 2\)$/,
    'e: for the running generation');
like($t->log(since => $since),
    qr/control process \(pid $ctl[0], generation 2\) exited on signal 9/,
    'e: the master logged the loss');
$before = checks_seen();
ok(waitfor(sub { checks_seen() >= $before + 3 }, 5),
    'e: the new control process checks');
is(join("\n", transitions($since)), '',
    'e: no endpoint changed state across the restart');

###########################################################################
# (f) meshgate -t refuses bad health_check values, with file:line.

my $bad = $t->write_file('bad.conf', <<'EOF');
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/"; cluster = "a"; } ); };
clusters = (
    { name = "a"; endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } );
      health_check = { interval = 1.0;
                       timeout = 2.0; }; },
    { name = "b"; endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } );
      health_check = { statuses = [ "200",
                                    "2xx" ]; }; },
    { name = "c"; endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } );
      health_check = { type = "udp"; }; } );
EOF
my $r = $t->run_binary('-t', '-c', $bad);
is($r->{status}, 1, 'f: meshgate -t exits 1');
like($r->{stderr}, qr/\Q$bad\E:7: health_check timeout .*must not exceed its interval/,
    'f: timeout > interval is refused at its line');
like($r->{stderr}, qr/\Q$bad\E:10: status "2xx" must be a code/,
    'f: a bad status is refused at its line');
like($r->{stderr}, qr/\Q$bad\E:12: health_check type must be "http" or "tcp"/,
    'f: an unknown type is refused at its line');

###########################################################################
# HTTP/2 endpoints: checked in HTTP/2 (h2c, h2 over TLS with ALPN), TLS
# verification included.

SKIP: {
    skip 'no python3 with the h2 package', 7
        unless Test::Meshgate::h2_python();
    skip 'openssl is not installed', 7
        unless grep { -x "$_/openssl" } split /:/, $ENV{PATH};

    $t->stop;
    $t->make_ca('ca');
    $t->make_ca('other');
    $t->make_cert('srv', cn => 'h2.test', san => 'DNS:h2.test');
    $t->run_h2_backend(port => 8091, name => 'h2c', h2c => 1);
    $t->run_h2_backend(port => 8092, name => 'h2', tls_cert => 'srv.crt',
        tls_key => 'srv.key');
    $t->run_h2_backend(port => 8093, name => 'h1only', tls_cert => 'srv.crt',
        tls_key => 'srv.key', alpn => 'http/1.1');
    my @q = map { port($_) } 8091 .. 8093;

    $t->write_conf(<<"EOF");
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/"; cluster = "h2c"; } ); };
clusters = (
    { name = "h2c"; protocol = "h2c"; health_check = { $HC };
      endpoints = ( { address = "127.0.0.1:%%PORT_8091%%"; } ); },
    { name = "h2c-503"; protocol = "h2c";
      health_check = { path = "/healthz?status=503"; $HC };
      endpoints = ( { address = "127.0.0.1:%%PORT_8091%%"; } ); },
    { name = "h2"; protocol = "h2"; health_check = { $HC };
      tls = { ca = "ca.crt"; sni = "h2.test"; };
      endpoints = ( { address = "127.0.0.1:%%PORT_8092%%"; } ); },
    { name = "wrongca"; protocol = "h2"; health_check = { type = "tcp"; $HC };
      tls = { ca = "other.crt"; sni = "h2.test"; };
      endpoints = ( { address = "127.0.0.1:%%PORT_8092%%"; } ); },
    { name = "noalpn"; protocol = "h2"; health_check = { $HC };
      tls = { ca = "ca.crt"; sni = "h2.test"; };
      endpoints = ( { address = "127.0.0.1:%%PORT_8093%%"; } ); },
    { name = "h1tls"; health_check = { $HC };
      tls = { ca = "ca.crt"; sni = "h2.test"; };
      endpoints = ( { address = "127.0.0.1:%%PORT_8093%%"; } ); } );
EOF
    $since = $t->log_offset;
    $t->run;
    my $w = sub { $t->waitforlog($_[0], since => $since) };
    ok($w->(qr/endpoint 127\.0\.0\.1:$q[0] of cluster h2c is now healthy/),
        'h2c: a check in cleartext HTTP/2 passes');
    ok($w->(qr/endpoint 127\.0\.0\.1:$q[0] of cluster h2c-503 is now unhealthy \(status 503\)/),
        'h2c: :status 503 fails it');
    ok($w->(qr/endpoint 127\.0\.0\.1:$q[1] of cluster h2 is now healthy/),
        'h2: a check over TLS with ALPN h2 passes');
    ok($w->(qr/endpoint 127\.0\.0\.1:$q[1] of cluster wrongca is now unhealthy \(TLS handshake failed.*certificate verify failed/),
        'h2: a certificate the cluster does not trust fails a TCP check');
    ok($w->(qr/endpoint 127\.0\.0\.1:$q[2] of cluster noalpn is now unhealthy \(no HTTP\/2 agreed/),
        'h2: an endpoint that does not agree to h2 fails');
    ok($w->(qr/endpoint 127\.0\.0\.1:$q[2] of cluster h1tls is now healthy/),
        'http/1.1 over TLS: the check passes');
    my @streams = grep { ($_->{path} // '') =~ m{^/healthz} }
        $t->h2_events(8091, ev => 'stream');
    ok(@streams && !grep({ !grep { $_->[0] eq ':authority'
        && $_->[1] =~ /^h2c/ } @{$_->{headers}} } @streams),
        'h2c: the checks carry the cluster name as :authority');
}

$t->stop_and_check;
done_testing();
