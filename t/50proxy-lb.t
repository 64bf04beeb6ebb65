#!/usr/bin/perl

# Load balancing over a cluster's endpoints: round_robin,
# weighted_round_robin and least_request. One worker, so the balancer's
# state is that of a single process and the shares are exact.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(time sleep);
use Test::Meshgate;

my $t = Test::Meshgate->new;

my @backends = map { $t->run_backend(port => 8081 + $_, name => "b$_",
    verbose => 1) } 0 .. 2;
$t->write_conf(<<'EOF');
gateway = { workers = 1; drain_timeout = 1.0; log_level = "info"; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; } );
routes = { mesh = (
    { domains = [ "rr.test" ]; prefix = "/"; cluster = "rr"; },
    { domains = [ "wrr.test" ]; prefix = "/"; cluster = "wrr"; },
    { domains = [ "lr.test" ]; prefix = "/"; cluster = "lr"; } ); };
clusters = (
    { name = "rr"; lb = "round_robin";
      endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; },
                    { address = "127.0.0.1:%%PORT_8082%%"; },
                    { address = "127.0.0.1:%%PORT_8083%%"; } ); },
    { name = "wrr"; lb = "weighted_round_robin";
      endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; weight = 1; },
                    { address = "127.0.0.1:%%PORT_8082%%"; weight = 3; },
                    { address = "127.0.0.1:%%PORT_8083%%"; weight = 6; } ); },
    { name = "lr"; lb = "least_request";
      endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; },
                    { address = "127.0.0.1:%%PORT_8082%%"; } ); } );
EOF
$t->run;

# The backend name that answered, or "status N".
sub who {
    my ($r) = @_;
    return 'none' unless $r;
    return $r->{body} =~ /^(b\d) / ? $1 : "status $r->{status}"
        if ($r->{status} // 0) == 200;
    return 'status ' . ($r->{status} // 'none');
}

sub count {
    my %n;
    $n{$_}++ for @_;
    return \%n;
}

# round_robin: 30 requests on new connections, then 30 on one keep-alive
# connection.
my @seq = map { who(parse_response(http_get("/rr$_", host => 'rr.test'))) }
    1 .. 30;
is_deeply(count(@seq), { b0 => 10, b1 => 10, b2 => 10 },
    'round_robin spreads 30 requests 10/10/10') or diag("@seq");
is(scalar(grep { $seq[$_] eq $seq[$_ - 1] } 1 .. $#seq), 0,
    'round_robin never picks the same endpoint twice in a row')
    or diag("@seq");
is_deeply([ @seq[3 .. 5] ], [ @seq[0 .. 2] ], 'round_robin cycles in order');

my $c = Test::Meshgate::Client->new(port => port(8000));
@seq = map { who($c->get("/rk$_", host => 'rr.test')) } 1 .. 30;
$c->close;
is_deeply(count(@seq), { b0 => 10, b1 => 10, b2 => 10 },
    'requests on one client connection are balanced too') or diag("@seq");

# weighted_round_robin 1:3:6.
@seq = map { who(parse_response(http_get("/w$_", host => 'wrr.test'))) }
    1 .. 100;
is_deeply(count(@seq), { b0 => 10, b1 => 30, b2 => 60 },
    'weighted_round_robin 1:3:6 gives 10/30/60 of 100') or diag("@seq");
my @first = @seq[0 .. 9];
is_deeply(count(@first), { b0 => 1, b1 => 3, b2 => 6 },
    'every 10 requests already follow the weights') or diag("@first");
my $longest = 0;
my $run = 0;
for my $i (0 .. $#seq) {
    $run = $i && $seq[$i] eq $seq[$i - 1] ? $run + 1 : 1;
    $longest = $run if $run > $longest;
}
cmp_ok($longest, '<=', 3,
    'the heavy endpoint is interleaved, not picked 6 times in a row')
    or diag("@seq");

# least_request: while one slow request is in flight on one endpoint, the
# others go to the idle endpoint.
{
    my $file = $t->testdir . '/slow.out';
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        my $raw = http_get('/delay/1500', host => 'lr.test', timeout => 10,
            quiet => 1);
        open my $fh, '>', $file or POSIX::_exit(1);
        print $fh $raw // '';
        close $fh;
        POSIX::_exit(0);
    }
    # Wait until the slow request reached a backend: requests after that
    # must avoid it.
    ok(waitfor(sub {
        grep { $t->daemon_log($_) =~ m{GET /delay/1500 } } @backends
    }, 5), 'the slow request reached a backend');
    my @quick = map {
        who(parse_response(http_get("/q$_", host => 'lr.test')))
    } 1 .. 8;
    waitfor(sub { waitpid($pid, WNOHANG) == $pid }, 10)
        or do { kill 'KILL', $pid; waitpid($pid, 0) };
    my $slow = parse_response(read_file($file));
    my $busy = $slow->{headers}{'x-backend'} // 'none';
    is($slow->{status}, 200, 'the slow request succeeds');
    like($busy, qr/^b[01]$/, 'on an endpoint of the cluster');
    my $idle = $busy eq 'b0' ? 'b1' : 'b0';
    is_deeply(count(@quick), { $idle => 8 },
        'least_request sends every request to the idle endpoint meanwhile')
        or diag("slow on $busy, quick: @quick");

    @quick = map {
        who(parse_response(http_get("/r$_", host => 'lr.test')))
    } 1 .. 10;
    my $n = count(@quick);
    ok(($n->{b0} // 0) >= 3 && ($n->{b1} // 0) >= 3,
        'with nothing in flight both endpoints are used')
        or diag("@quick");
}

$t->stop_and_check;
done_testing();
