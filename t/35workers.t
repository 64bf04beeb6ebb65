#!/usr/bin/perl

# Worker processes: connections spread across every worker; "auto" starts
# one worker per online CPU.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(time);
use Test::Meshgate;

my $t = Test::Meshgate->new;
my $dir = $t->testdir;

sub conf {
    my ($workers) = @_;
    return <<"EOF";
gateway = { workers = $workers; drain_timeout = 2.0; log_level = "info"; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; access_log = "%%TESTDIR%%/access.log"; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/";
                      direct_response = { status = 200; body = "ok\\n"; }; } ); };
EOF
}

# workers = 4: 200 requests from 40 parallel clients, one connection each.

$t->write_conf(conf(4));
$t->run;
my @workers;
ok(waitfor(sub { (@workers = $t->worker_pids) == 4 }, 5),
    'workers = 4 starts 4 workers') or diag("workers: @workers");

my ($clients, $per_client) = (40, 5);
pipe(my $go_r, my $go_w) or die "pipe: $!";
my %kids;
for my $k (1 .. $clients) {
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        close $go_w;
        # Start together: wait until the parent closes the pipe.
        sysread($go_r, my $x, 1);
        my $ok = 0;
        for my $i (1 .. $per_client) {
            my $r = http_get("/c$k-$i", timeout => 5, quiet => 1);
            $ok++ if defined $r && $r =~ m{^HTTP/1\.1 200 .*\r\n\r\nok\n\z}s;
        }
        POSIX::_exit($ok == $per_client ? 0 : 1);
    }
    $kids{$pid} = 1;
}
close $go_r;
close $go_w;

my $failed = 0;
waitfor(sub {
    for my $pid (keys %kids) {
        next unless waitpid($pid, WNOHANG) == $pid;
        $failed++ if $?;
        delete $kids{$pid};
    }
    return !%kids;
}, 30);
if (%kids) {
    kill 'KILL', keys %kids;
    waitpid($_, 0) for keys %kids;
}
is(scalar(keys %kids), 0, 'every client finished in time');
is($failed, 0, 'every client got 200 for each of its requests');

my $total = $clients * $per_client;
my @lines;
ok(waitfor(sub {
    @lines = grep { m{ "GET /c\d+-\d+ HTTP/1\.1" 200 } }
        split /\n/, read_file("$dir/access.log");
    return @lines >= $total;
}, 5), "the access log has all $total requests") or diag(scalar @lines);

my %by_pid;
$by_pid{$_}++ for map { / pid=(\d+)/ ? $1 : () } @lines;
my %is_worker = map { $_ => 1 } @workers;
is(scalar(grep { !$is_worker{$_} } keys %by_pid), 0,
    'every logged pid is one of the workers');
cmp_ok(scalar(keys %by_pid), '>=', 2, 'at least 2 workers served requests');
is(scalar(grep { $by_pid{$_} } @workers), 4,
    'each of the 4 workers served at least one request')
    or diag(explain \%by_pid);

is($t->stop, 0, 'the gateway stops');

# workers = "auto": one worker per online CPU.

my $ncpu = `getconf _NPROCESSORS_ONLN 2>/dev/null`;
$ncpu = () = read_file('/proc/cpuinfo') =~ /^processor\s*:/mg
    unless $ncpu && $ncpu =~ /^\d+$/;
chomp $ncpu;

$t->write_conf(conf('"auto"'));
my $since = $t->log_offset;
$t->run;
like($t->log(since => $since), qr/generation 1 started \($ncpu workers\)/,
    "workers = \"auto\" announces $ncpu workers");
ok(waitfor(sub { (@workers = proxy_workers()) == $ncpu }, 5),
    "workers = \"auto\" starts $ncpu worker processes")
    or diag("workers: @workers");

like(http_get('/auto'), qr/ 200 /, 'the auto workers serve');

$t->stop_and_check;
done_testing();

# Children of the master, without a control worker if there is one.
sub proxy_workers {
    return grep { Test::Meshgate::proc_title($_) !~ /control/i }
        $t->worker_pids;
}
