#!/usr/bin/perl

# Readiness for systemd (Type=notify): the master reports READY=1 once
# every worker runs, RELOADING=1 then READY=1 around a reload (also a
# failed one, with the reason in STATUS), STOPPING=1 on stop. The messages
# go to a datagram socket given in NOTIFY_SOCKET, as the service manager
# would.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::UNIX;
use IO::Select;
use Socket qw(SOCK_DGRAM);
use Test::Meshgate;

my $t = Test::Meshgate->new;
my $dir = $t->testdir;

my $conf = <<'EOF';
gateway = { workers = 2; drain_timeout = 2.0; log_level = "info";
            error_log = "%%TESTDIR%%/error.log"; };
admin = { listen = "127.0.0.1:%%PORT_9901%%"; };
listeners = ( { name = "main"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "r"; } );
routes = { r = ( { domains = [ "*" ]; prefix = "/";
                   direct_response = { status = 200; body = "up\n"; }; } ); };
EOF
$t->write_conf($conf);

my $path = "$dir/notify.sock";
my $sock = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $path)
    or die "notify socket: $!";
my $sel = IO::Select->new($sock);

# The messages of one burst: waits up to |timeout| for the first, then
# takes more until 0.3 s pass quietly.
sub messages {
    my ($timeout) = @_;
    my @m;
    my $deadline = time + $timeout;
    while ((my $left = $deadline - time) > 0) {
        last unless $sel->can_read($left);
        my $buf;
        $sock->recv($buf, 4096);
        push @m, $buf;
        $deadline = time + 0.3;
    }
    return @m;
}

# Reads messages until one matches |re|: (found, every message seen).
sub wait_for {
    my ($re, $timeout) = @_;
    my @seen;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        for my $m (messages(0.5)) {
            push @seen, $m;
            return (1, @seen) if $m =~ $re;
        }
    }
    return (0, @seen);
}

{
    local $ENV{NOTIFY_SOCKET} = $path;
    $t->run;
}

my ($ok, @seen) = wait_for(qr/^READY=1$/m, 10);
ok($ok, 'READY=1 after start');
my ($ready) = grep { /READY=1/ } @seen;
like($ready // '', qr/STATUS=generation 1: 2 of 2 workers running/,
    'with a STATUS naming the generation and the workers');
push @seen, messages(0.5);
is(scalar(grep { /READY=1/ } @seen), 1, 'READY=1 once');
is(scalar(grep { /RELOADING|STOPPING/ } @seen), 0, 'nothing else at start');
is(scalar($t->worker_pids), 2, 'both workers run when READY=1 comes');

# Reload: RELOADING=1, then READY=1 for generation 2.
is($t->reload, 1, 'reload');
($ok, @seen) = wait_for(qr/^READY=1$/m, 10);
ok($ok, 'READY=1 after the reload');
ok((grep { /^RELOADING=1$/m } @seen), 'RELOADING=1 before it');
my ($r2) = grep { /READY=1/ } @seen;
like($r2 // '', qr/generation 2: 2 of 2 workers running/,
    'READY=1 names generation 2');

# A failed reload ends the reload state too, and says why.
$t->write_conf($conf . "bogus_key = 1;\n");
is($t->reload, 0, 'a bad configuration is refused');
($ok, @seen) = wait_for(qr/^READY=1$/m, 10);
ok($ok, 'READY=1 after a failed reload');
my ($rf) = grep { /READY=1/ } @seen;
like($rf // '', qr/STATUS=reload failed, generation 2 still serving/,
    'its STATUS says the reload failed');
ok((grep { /^RELOADING=1$/m } @seen), 'RELOADING=1 came first');

# Stop: STOPPING=1.
$t->write_conf($conf);
$t->stop;
($ok, @seen) = wait_for(qr/^STOPPING=1$/m, 5);
ok($ok, 'STOPPING=1 on SIGTERM');

# Without NOTIFY_SOCKET nothing is sent and nothing complains.
$t->run;
is(scalar(messages(1)), 0, 'no NOTIFY_SOCKET: no message');
unlike($t->log, qr/NOTIFY_SOCKET/, 'and no complaint');
$t->stop;

done_testing;
