#!/usr/bin/perl

# The master and its signals: TERM (graceful), QUIT (fast), USR1 (reopen
# logs), a killed worker is respawned, workers drop privileges.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Test::Meshgate;

my $t = Test::Meshgate->new;

$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 5.0; log_level = "info";
            user = "nobody"; error_log = "%%TESTDIR%%/error.log"; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; access_log = "%%TESTDIR%%/access.log"; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/"; cluster = "backend"; } ); };
clusters = ( { name = "backend"; lb = "round_robin"; connect_timeout = 1.0;
               response_timeout = 10.0;
               endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); } );
EOF

my $backend = $t->run_backend(port => 8081, name => 'b1', verbose => 1);
$t->run;

my $dir = $t->testdir;

ok(waitfor(sub { $t->worker_pids == 2 }, 5), 'the master runs 2 workers');

like(http_get('/hello'), qr/^HTTP\/1\.1 200 .*b1 GET \/hello/s,
    'a request is proxied to the backend');

# Workers drop privileges; the master keeps root.

SKIP: {
    skip 'not running as root', 3 unless $> == 0;
    my $nobody = getpwnam('nobody');
    skip 'no user "nobody"', 3 unless defined $nobody;

    is(scalar(Test::Meshgate::proc_uid($t->master_pid)), 0,
        'the master stays root');
    my @w = $t->worker_pids;
    my @uids = map { scalar Test::Meshgate::proc_uid($_) } @w;
    is_deeply(\@uids, [ ($nobody) x @w ],
        'every worker runs as user "nobody"');
    my @real = map { (Test::Meshgate::proc_uid($_))[0] } @w;
    is_deeply(\@real, [ ($nobody) x @w ],
        'the real uid of the workers is "nobody" too');
}

# A worker killed with SIGKILL is replaced, and the new one serves.

my @before = $t->worker_pids;
my $victim = $before[0];
kill 'KILL', $victim;
my @after;
ok(waitfor(sub {
    @after = $t->worker_pids;
    return @after == 2 && !grep { $_ == $victim } @after;
}, 5), 'a worker killed with SIGKILL is replaced');
my ($new) = grep { my $p = $_; !grep { $_ == $p } @before } @after;
ok($new, 'the replacement has a new PID');
like($t->log, qr/worker \d+ \(pid $victim, generation \d+\) exited/,
    'the master logs the exit of the killed worker');

# Batches of parallel connections until the new worker has served one.
my ($served, $all_ok) = (0, 1);
for my $batch (1 .. 50) {
    my @c = grep { defined } map {
        Test::Meshgate::Client->new(port => port(8000)) } 1 .. 8;
    $_->send("GET /after-kill-$batch HTTP/1.1\r\nHost: a\r\n"
        . "Connection: close\r\n\r\n") for @c;
    for my $c (@c) {
        my $r = $c->read_response;
        $all_ok = 0 unless $r && $r->{status} == 200;
        $c->close;
    }
    last if $served = waitfor(sub {
        read_file("$dir/access.log") =~ /after-kill.* pid=$new\b/ }, 0.2);
}
ok($all_ok, 'every request after the kill succeeds');
ok($served, 'the new worker serves requests');

# USR1: the master and the workers reopen their logs.

like(http_get('/before-usr1'), qr/ 200 /, 'a request before USR1');
ok(waitfor(sub { read_file("$dir/access.log") =~ /before-usr1/ }, 5),
    'the request is in the access log');
rename "$dir/access.log", "$dir/access.log.1" or die "rename: $!";
rename "$dir/error.log", "$dir/error.log.1" or die "rename: $!";
$t->signal('USR1');

# Until the workers have reopened, requests still land in the old file.
my $i = 0;
ok(waitfor(sub {
    $i++;
    http_get("/after-usr1-$i");
    return read_file("$dir/access.log") =~ /after-usr1/;
}, 5), 'after USR1 requests are logged in a new access log');
unlike(read_file("$dir/access.log"), qr/before-usr1/,
    'the new access log was created fresh');
like(read_file("$dir/access.log.1"), qr/before-usr1/,
    'the rotated access log keeps the old lines');
like(read_file("$dir/error.log.1"), qr/generation 1 started/,
    'the rotated error log keeps the old lines');
# The reopening is logged to the old file (before it) or the new one.
ok(waitfor(sub { -e "$dir/error.log" }, 5), 'USR1 creates a new error log');
is($t->reload, 1, 'a reload after USR1 is logged');
like(read_file("$dir/error.log"), qr/reload: generation 2 started/,
    'the master writes to the new error log');

# TERM while a slow request is in flight: it completes, then exit 0.

my $s = http("GET /delay/1500 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    start => 1);
ok(waitfor(sub { $t->daemon_log($backend) =~ /GET \/delay\/1500/ }, 5),
    'the slow request reached the backend');
my @workers = $t->worker_pids;
my $t0 = time;
$t->signal('TERM');
my $r = parse_response(http('', socket => $s, timeout => 10));
is($r->{status}, 200, 'the request in flight at TERM completes');
is($r->{body}, "delayed 1500\n", 'with its whole body');
my $st = $t->wait_exit(10);
is($st, 0, 'after TERM the master exits with code 0');
ok($st == 0 && time - $t0 >= 1.0,
    'the master waited for the request in flight');
like($t->log, qr/exiting/, 'the master logs "exiting"');
ok(waitfor(sub { !grep { alive($_) } @workers }, 2),
    'no worker is left behind');

# QUIT: a fast stop does not wait for a request in flight.

$t->run;
$s = http("GET /delay/5000 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    start => 1);
ok(waitfor(sub { $t->daemon_log($backend) =~ /GET \/delay\/5000/ }, 5),
    'a 5 s request reached the backend');
$t0 = time;
$t->signal('QUIT');
$st = $t->wait_exit(4);
my $took = time - $t0;
ok(defined $st, 'after QUIT the master exits before the request completes');
ok(defined $st && ($st & 127) == 0, 'the master exits on QUIT, not killed')
    or diag('status ' . ($st // 'undef'));
my $reply = http('', socket => $s, timeout => 5, quiet => 1);
ok(time - $t0 < 4.5, 'the client connection is closed at once')
    or diag(sprintf 'took %.1f s, got %d bytes', time - $t0,
        length($reply // ''));

$t->stop_and_check;
done_testing();

# A process that exists and is not a zombie.
sub alive {
    my ($pid) = @_;
    my $st = read_file("/proc/$pid/stat");
    return $st =~ /^\d+ \(.*\) ([^Z])/s ? 1 : 0;
}
