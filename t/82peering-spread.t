#!/usr/bin/perl

# Peering spread: the few, long-lived HTTP/2 connections that other
# regions open to a peering listener are balanced over the receiving
# workers instead of piling onto whichever woke first. Region a (4
# workers, its own "users" endpoint dead) sends everything to region b,
# each of a's workers over its own connection; b (4 workers) holds one on
# each. More peering clients, arriving one by one or together, keep b's
# workers within one connection of each other, and a worker whose
# connections closed takes the next ones. Which worker holds which
# connection comes from /proc (worker_sockets). Needs root (network
# namespaces); skips otherwise.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use List::Util qw(max min sum0);
use Test::More;
use Test::Meshgate;
use Test::Regions;

my $W = 4;    # workers on each side
my $r = Test::Regions->new(regions => [qw(a b)], delay_ms => 5,
    peering_port => 8443);
my %t = map { $_ => $r->meshgate($_) } qw(a b);
my $d = $r->dir;
my $bpeer = $r->addr('b') . ':' . port(8443);

$t{a}->write_conf(<<"EOF");
gateway = { region = "a"; workers = $W; drain_timeout = 1.0; };
regions = (
    { name = "b"; front_proxy = "${\ $r->link_addr('a', 'b') }";
      tls = { ca = "mesh-ca.crt"; cert = "gw-a.crt"; key = "gw-a.key";
              sni = "gw.b.mesh"; }; } );
listeners = (
    { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%"; routes = "mesh"; } );
routes = { mesh = ( { domains = [ "users" ]; prefix = "/"; cluster = "users"; } ); };
clusters = (
    # Nothing listens on a's own endpoint: every request goes to b.
    { name = "users"; out_of_zone = [ "b" ];
      health_check = { path = "/healthz"; interval = 0.2; timeout = 0.2;
                       healthy_threshold = 1; unhealthy_threshold = 1; };
      endpoints = ( { address = "127.0.0.1:%%PORT_9001%%"; } ); } );
EOF

$t{b}->write_conf(<<"EOF");
gateway = { region = "b"; workers = $W; drain_timeout = 1.0; };
listeners = (
    { name = "peering"; listen = "$bpeer"; peering = true; routes = "mesh";
      idle_timeout = 300.0;
      tls = { certificates = ( { cert = "gw-b.crt"; key = "gw-b.key"; } );
              client_ca = "mesh-ca.crt"; verify_client = "required";
              alpn = [ "h2" ]; }; } );
routes = { mesh = ( { domains = [ "users" ]; prefix = "/"; cluster = "users"; } ); };
clusters = (
    { name = "users"; response_timeout = 120.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_9001%%"; } ); } );
EOF

$r->backend('b', port => 9001, name => 'b1', verbose => 0);

# { slot => [ sockets ] }: the established connections each of b's
# workers holds on its peering listener, once two readings in a row agree
# (/proc/net/tcp is no snapshot).
sub b_sockets {
    my ($by, $last, $now) = ({}, '', '');
    for (1 .. 20) {
        $by = $t{b}->worker_sockets(lport => port(8443),
            state => 'ESTABLISHED');
        ($last, $now) = ($now, join ' ', map { "$_:" . join ',', sort
            map { $_->{inode} } @{$by->{$_}} } sort keys %$by);
        last if $now eq $last;
    }
    return $by;
}

# { slot => n }: how many of them.
sub b_spread {
    my $by = b_sockets();
    return { map { $_ => scalar @{$by->{$_}} } keys %$by };
}

sub total { sum0(values %{$_[0]}) }
sub spread { my $s = shift; max(values %$s) - min(values %$s) }
sub show { my $s = shift; join ' ', map { "$_:$s->{$_}" } sort keys %$s }

# A peering client from inside b, straight to the listener (no relay, so
# b sees its own source port): an HTTP/2 request that b's backend answers
# only after |ms|, holding the connection until then or until killed.
sub hold {
    my ($ms) = @_;
    return $r->spawn('b', 'curl', '-sS', '-o', '/dev/null', '--http2',
        '--max-time', '120', '--cacert', "$d/mesh-ca.crt",
        '--cert', "$d/gw-a.crt", '--key', "$d/gw-a.key",
        '--connect-to', "gw.b.mesh:443:$bpeer", '-H', 'Host: users',
        "https://gw.b.mesh/delay/$ms");
}

# The local port of the peering connection of hold()'s curl |pid|.
sub hold_port {
    my ($pid) = @_;
    my ($s) = Test::Meshgate::tcp_sockets($pid, rport => port(8443),
        state => 'ESTABLISHED');
    return $s ? $s->{lport} : undef;
}

# Sends requests through a's mesh listener, 8 clients in parallel so that
# every worker of a gets some, until each of a's workers holds a
# connection to b (20 rounds at most). Returns { slot => connections }
# and the rounds it took.
sub drive_a {
    my ($tag) = @_;
    my ($relay_port) = $r->link_addr('a', 'b') =~ /:(\d+)$/;
    my %has;
    for my $round (1 .. 20) {
        my $h = $r->start_clients('a', clients => 8, count => 5,
            duration => 10, code => sub {
                my ($c, $i) = @_;
                http_get("/echo?$tag$c.$i", port => port(8000),
                    host => 'users', timeout => 10, quiet => 1);
                return {};
            });
        $r->wait_clients($h);
        my $by = $t{a}->worker_sockets(rport => $relay_port,
            state => 'ESTABLISHED');
        %has = map { $_ => scalar @{$by->{$_}} }
            grep { @{$by->{$_}} } keys %$by;
        return (\%has, $round) if keys %has == $W;
    }
    return (\%has, 20);
}

my $started = eval { $t{b}->run; $t{a}->run; 1 };
ok($started, 'both meshgates start with 4 workers each')
    or diag((split /\n/, $@ // '')[0]);

SKIP: {
    skip 'a meshgate did not start', 10 unless $started;

###########################################################################
# Region a's four workers each open their connection to b.

    my ($a_has, $rounds) = drive_a('x');
    note("a's connections to b per worker after $rounds rounds: "
        . show($a_has));
    is(scalar keys %$a_has, $W, "each of a's $W workers opened a connection"
        . ' to b') or diag(show($a_has));
    my $n = total($a_has);

    my $s = {};
    waitfor(sub { $s = b_spread(); total($s) == $n }, 5);
    note("b's peering connections per worker: " . show($s));
    is(total($s), $n, "b holds the $n peering connections a opened");
    if ($n == $W) {
        is(scalar(grep { $_ == 1 } values %$s), $W,
            "b: each of its $W workers holds exactly one of them")
            or diag(show($s));
    } else {
        cmp_ok(spread($s), '<=', 1, "b: its workers hold within one of"
            . " each other ($n connections)") or diag(show($s));
    }

###########################################################################
# Clients arriving one by one keep the spread within one.

    my (%held, @steps);
    for my $i (1 .. 2 * $W) {
        my $want = total($s) + 1;
        my $pid = hold(60000);
        $held{$pid} = 1;
        waitfor(sub { $s = b_spread(); total($s) >= $want }, 10);
        push @steps, $s;
    }
    note('after ' . 2 * $W . " more, one by one: " . show($s));
    is(total($s), $n + 2 * $W, 'b holds ' . 2 * $W . ' more peering'
        . ' connections') or diag(show($s));
    cmp_ok(max(map { spread($_) } @steps), '<=', 1, 'b: after each arrival'
        . ' its workers hold within one of each other')
        or diag(join ' | ', map { show($_) } @steps);

###########################################################################
# A worker whose connections closed takes the next ones, even when they
# arrive together.

    my $by = b_sockets();
    my %slot_of;
    for my $slot (keys %$by) {
        $slot_of{$_->{rport}} = $slot for @{$by->{$slot}};
    }
    my %held_on;
    for my $pid (keys %held) {
        my $p = hold_port($pid) // next;
        push @{$held_on{$slot_of{$p} // 'none'}}, $pid;
    }
    my ($x) = sort { @{$held_on{$b}} <=> @{$held_on{$a}} || $a <=> $b }
        grep { $_ ne 'none' } keys %held_on;
    $x //= 0;
    my @gone = @{$held_on{$x} || []};
    my $before = $s->{$x} // 0;
    $r->kill_pid($_) for @gone;
    delete @held{@gone};
    waitfor(sub { $s = b_spread(); ($s->{$x} // 0) == $before - @gone },
        10);
    note('closed the ' . scalar(@gone) . " held on worker $x: "
        . show($s));
    ok(@gone >= 1 && $s->{$x} == $before - @gone,
        "b: worker $x let go of the " . scalar(@gone) . ' connections'
        . ' closed on it') or diag(show($s));

    my $want = total($s) + @gone;
    my @burst = map { hold(60000) } @gone;
    $held{$_} = 1 for @burst;
    waitfor(sub { $s = b_spread(); total($s) >= $want }, 10);
    note(scalar(@burst) . ' arriving together: ' . show($s));
    is($s->{$x}, $before, "b: worker $x took all of the "
        . scalar(@burst) . ' new ones') or diag(show($s));
    cmp_ok(spread($s), '<=', 1, "b: its workers hold within one of each"
        . ' other again') or diag(show($s));

###########################################################################
# A reload: the new generation's workers start from nothing, whatever the
# old ones held (worker $x holds fewer than the others just before).

    $by = b_sockets();
    my %on_x = map { $_->{rport} => 1 } @{$by->{$x} || []};
    @gone = grep { my $p = hold_port($_); defined $p && $on_x{$p} }
        keys %held;
    $r->kill_pid($_) for @gone;
    delete @held{@gone};
    waitfor(sub { $s = b_spread(); ($s->{$x} // 0) == $before - @gone },
        10);
    note("before the reload: " . show($s));
    is($t{b}->reload, 1, 'b reloads');
    # The old generation tells a's workers to go away, and lets the held
    # clients go at its drain timeout.
    waitfor(sub { !grep { $r->alive($_) } keys %held }, 10);
    ($a_has, $rounds) = drive_a('r');
    waitfor(sub { $s = b_spread(); total($s) == total($a_has) }, 5);
    note("after the reload, a's connections to b: " . show($a_has));
    note("after the reload, b's new workers: " . show($s));
    is_deeply([ map { $s->{$_} // 0 } 0 .. $W - 1 ], [ (1) x $W ],
        "b: each of the new generation's $W workers holds exactly one of"
        . " a's new connections") or diag(show($s));

    $r->kill_pid($_) for keys %held;
}

for my $reg (qw(a b)) {
    $t{$reg}->stop_and_check;
}
done_testing();
