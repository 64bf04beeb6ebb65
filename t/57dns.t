#!/usr/bin/perl

# Endpoints and front proxies by host name. `meshgate -t` accepts them
# without resolving them. The control process resolves each name, here
# from a hosts file of the test's own (meshgate runs in a private mount
# namespace where it is /etc/hosts, and where nsswitch.conf says "files",
# so no query ever leaves the machine), and every address of a name is
# used. A changed answer moves new connections, pooled HTTP/1.1 ones and
# HTTP/2 connections included, within dns_refresh. A name that stops
# resolving keeps its last addresses, with one warning, across a reload
# too, and one notice when it is back. A name with no address yet is a
# connect failure that the retry takes to the next region, whose front
# proxy is itself a host name. Health checks follow the answer.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Socket::INET;
use IO::Socket::IP;
use Test::More;
use Time::HiRes qw(time sleep);
use Test::Meshgate;

my $t = Test::Meshgate->new;
my $dir = $t->testdir;

###########################################################################
# The configuration: names that nothing resolves pass `meshgate -t`, which
# never looks them up (it does not even read the hosts file).

$t->write_file('check.conf', <<'EOF');
regions = ( { name = "far"; front_proxy = "gw.far.invalid:8443";
              dns_refresh = 5; } );
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/"; cluster = "users"; } ); };
clusters = ( { name = "users"; dns_refresh = 0.5; out_of_zone = [ "far" ];
               endpoints = ( { address = "users.invalid:8080"; },
                             { address = "USERS.invalid:8081"; } ); } );
EOF
my $r = $t->run_binary('-t', '-c', "$dir/check.conf");
is($r->{status}, 0, '-t accepts endpoints and a front proxy by host name')
    or diag($r->{stderr});

$t->write_file('bad.conf', <<'EOF');
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/"; cluster = "users"; } ); };
clusters = ( { name = "users"; dns_refresh = 0;
               endpoints = ( { address = "users..invalid:8080"; },
                             { address = "*:8081"; } ); } );
EOF
$r = $t->run_binary('-t', '-c', "$dir/bad.conf");
is($r->{status}, 1, '-t refuses bad names, "*" and dns_refresh = 0');
like($r->{stderr}, qr/bad.conf:4: key "dns_refresh" must be/,
    'dns_refresh must be positive');
like($r->{stderr}, qr/bad.conf:5: bad address "users\.\.invalid:8080": bad host name/,
    'a name that could never resolve is refused');
like($r->{stderr}, qr/bad.conf:6: bad address "\*:8081": it needs a host/,
    'an endpoint at "*" is refused');

###########################################################################
# meshgate with a hosts file of ours.

unless ($> == 0 && system('unshare -m true 2>/dev/null') == 0) {
    $t->stop_and_check;
    done_testing();
    diag('skipped the rest: a private /etc/hosts needs root and '
        . 'unshare -m');
    exit 0;
}

my ($p1, $p2, $p3, $p4, $p5, $p6) = map { port($_) } 8081 .. 8086;

# Lines keep their length whatever they say, and the file is rewritten in
# place (the bind mount holds its inode): a lookup that reads it during a
# write sees either version of each byte, never a shorter file.
my %hosts = ('both.test' => [ '127.0.0.1', '::1' ],
    'moving.test' => [ '127.0.0.2' ], 'hc.test' => [ '127.0.0.9' ],
    'fp.test' => [ '127.0.0.1' ], 'dead.test' => [ '127.0.0.9' ]);
my @order = qw(both.test moving.test hc.test fp.test dead.test);
my %off;    # names turned off by a '#'
my $hosts_file = "$dir/hosts";

sub hosts_text {
    my $text = "127.0.0.1       localhost\n";
    for my $name (@order) {
        $text .= sprintf("%s%-15s %s\n", $off{$name} ? '#' : ' ', $_, $name)
            for @{$hosts{$name}};
    }
    return $text;
}

sub write_hosts {
    my $text = hosts_text();
    if (-e $hosts_file) {
        open my $fh, '+<', $hosts_file or die "$hosts_file: $!\n";
        die "hosts file changed length\n" if -s $fh != length $text;
        syswrite($fh, $text) == length $text or die "$hosts_file: $!\n";
        close $fh;
        return;
    }
    open my $fh, '>', $hosts_file or die "$hosts_file: $!\n";
    print $fh $text;
    close $fh or die "$hosts_file: $!\n";
    chmod 0644, $hosts_file;
}

write_hosts();
$t->write_file('nsswitch.conf', "hosts: files\n");
$t->write_file('resolv.conf', "nameserver 127.1.2.3\n"
    . "options timeout:1 attempts:1\n");
chmod 0644, "$dir/nsswitch.conf", "$dir/resolv.conf";
my @binds = ([ $hosts_file, '/etc/hosts' ],
    [ "$dir/nsswitch.conf", '/etc/nsswitch.conf' ]);
push @binds, [ "$dir/resolv.conf", '/etc/resolv.conf' ]
    if -e '/etc/resolv.conf';
my $script = join(' && ', map { qq{mount --bind "\$$_" "$binds[$_ - 1][1]"} }
    1 .. @binds) . ' && shift ' . @binds . ' && exec "$@"';
my @wrap = ('unshare', '-m', 'sh', '-c', $script, 'sh',
    map { $_->[0] } @binds);

my $h2 = Test::Meshgate::h2_python();

$t->write_conf(<<"EOF");
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
regions = ( { name = "far"; front_proxy = "fp.test:$p5";
              protocol = "http/1.1"; dns_refresh = 0.3; } );
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; access_log = "%%TESTDIR%%/access.log"; } );
routes = { mesh = (
    { domains = [ "both" ]; prefix = "/"; cluster = "both"; },
    { domains = [ "moving" ]; prefix = "/"; cluster = "moving"; },
    { domains = [ "moving-h2" ]; prefix = "/"; cluster = "moving-h2"; },
    { domains = [ "spill" ]; prefix = "/"; cluster = "spill"; },
    { domains = [ "never" ]; prefix = "/"; cluster = "never"; },
    { domains = [ "dead" ]; prefix = "/"; cluster = "dead"; } ); };
clusters = (
    { name = "both"; max_idle = 0; dns_refresh = 0.3;
      endpoints = ( { address = "both.test:$p1"; } ); },
    { name = "moving"; dns_refresh = 0.3;
      endpoints = ( { address = "moving.test:$p2"; } ); },
    { name = "moving-h2"; protocol = "h2c"; dns_refresh = 5;
      endpoints = ( { address = "moving.test:$p4"; } ); },
    { name = "hc"; dns_refresh = 0.3;
      health_check = { type = "tcp"; interval = 0.2; timeout = 0.15;
                       healthy_threshold = 1; unhealthy_threshold = 1; };
      endpoints = ( { address = "hc.test:$p3"; } ); },
    { name = "spill"; out_of_zone = [ "far" ];
      endpoints = ( { address = "never.test:$p6"; } ); },
    { name = "never"; retry = { attempts = 1; };
      endpoints = ( { address = "never.test:$p6"; } ); },
    { name = "dead"; retry = { attempts = 1; };
      endpoints = ( { address = "dead.test:$p6"; } ); } );
EOF

my $backend = "$Test::Meshgate::TDIR/backend/mg-backend.pl";
sub backend {
    my ($addr, $name) = @_;
    $t->run_daemon($^X, $backend, '--listen', $addr, '--name', $name,
        '--watch-parent');
}
$t->run_backend(port => 8081, name => 'v4');
backend("[::1]:$p1", 'v6');
backend("127.0.0.2:$p2", 'two');
backend("127.0.0.3:$p2", 'three');
backend("127.0.0.2:$p3", 'hc');
$t->run_backend(port => 8085, name => 'fp');
for my $a ("127.0.0.2:$p2", "127.0.0.3:$p2", "127.0.0.2:$p3") {
    waitforsocket($a) or die "backend on $a did not start\n";
}
waitfor(sub { IO::Socket::IP->new(PeerHost => '::1', PeerPort => $p1) })
    or die "backend on [::1]:$p1 did not start\n";
if ($h2) {
    $t->run_h2_backend(port => 8084, h2c => 1, name => 'h2-two',
        args => [ '--host', '127.0.0.2' ]);
    $t->run_h2_backend(port => 8084, h2c => 1, name => 'h2-three',
        args => [ '--host', '127.0.0.3' ]);
}

$t->run(wrap => \@wrap);

# Who answered: the backend's name, or "status N".
sub who {
    my ($host) = @_;
    my $r = parse_response(http_get('/x', host => $host));
    return 'no answer' if $r->{bad} || !$r->{status};
    return "status $r->{status}" if $r->{status} != 200;
    return $1 if $r->{body} =~ /"name":\s*"([^"]+)"/;
    return $r->{headers}{'x-backend'} // 'unnamed';
}

sub tally {
    my ($host, $n) = @_;
    my %who;
    $who{who($host)}++ for 1 .. $n;
    return \%who;
}

ok($t->waitforlog(qr/dns: both\.test resolves to 127\.0\.0\.1, ::1/),
    'the control process resolves a name to all its addresses');
ok($t->waitforlog(qr/dns: moving\.test resolves to 127\.0\.0\.2$/m),
    'and every other name');
ok($t->waitforlog(qr/dns: fp\.test resolves to 127\.0\.0\.1$/m),
    'the front proxy\'s name too');
ok($t->waitforlog(qr/\[warn\].*dns: cannot resolve never\.test: [^;]+; no address known yet/),
    'a name that does not resolve is a warning');

###########################################################################
# Every address is used.

my $who = tally('both', 20);
ok(($who->{v4} // 0) >= 5 && ($who->{v6} // 0) >= 5
    && $who->{v4} + $who->{v6} == 20,
    'connections go to both addresses of a name, IPv4 and IPv6')
    or diag(explain($who));

###########################################################################
# A changed answer.

is_deeply(tally('moving', 5), { two => 5 }, 'moving.test goes to 127.0.0.2');
SKIP: {
    skip 'no python3 with the h2 package', 1 unless $h2;
    is_deeply(tally('moving-h2', 3), { 'h2-two' => 3 },
        'over HTTP/2 too, on one connection');
}

my $since = $t->log_offset;
$hosts{'moving.test'} = [ '127.0.0.3' ];
write_hosts();
ok(waitfor(sub { who('moving') eq 'three' }, 5),
    'after the answer changes, requests reach 127.0.0.3');
is_deeply(tally('moving', 10), { three => 10 },
    'all of them: pooled connections to the old address are not reused');
like($t->log(since => $since),
    qr/\[info\].*dns: moving\.test now resolves to 127\.0\.0\.3 \(was 127\.0\.0\.2\)/,
    'the change is logged at info');
SKIP: {
    skip 'no python3 with the h2 package', 3 unless $h2;
    # moving-h2 refreshes every 5 s, but shares the name with moving.
    ok(waitfor(sub { who('moving-h2') eq 'h2-three' }, 5),
        'HTTP/2 requests follow to 127.0.0.3');
    is_deeply(tally('moving-h2', 5), { 'h2-three' => 5 },
        'all of them: the connection to the old address takes no stream');
    like($t->log(since => $since),
        qr/HTTP\/2 connection to upstream moving\.test:$p4 \(127\.0\.0\.2:$p4\): its host name moved/,
        'the old HTTP/2 connection is closed, and the log says why');
}

###########################################################################
# Health checks follow the answer, and name the address.

ok($t->waitforlog(qr/health check: endpoint hc\.test:$p3 \(127\.0\.0\.9:$p3\) of cluster hc is now unhealthy \(connect refused\)/),
    'a check of an address where nothing listens fails');
$since = $t->log_offset;
$hosts{'hc.test'} = [ '127.0.0.2' ];
write_hosts();
ok($t->waitforlog(qr/health check: endpoint hc\.test:$p3 \(127\.0\.0\.2:$p3\) of cluster hc is now healthy/,
    since => $since), 'checks go to the new address, where it listens');

###########################################################################
# No address yet: a connect failure, never a crash.

$r = parse_response(http_get('/x', host => 'never'));
is($r->{status}, 503, 'a name with no address answers 503');
like($t->log, qr/connect\(\) to never\.test:$p6 failed.*Destination address required/,
    'the error log names the endpoint and why');
is(who('spill'), 'fp', 'a retry takes the request to the next region, '
    . 'whose front proxy is a host name');
ok($t->waitforlog(qr/dns: dead\.test resolves to 127\.0\.0\.9$/m)
    && who('dead') eq 'status 503',
    'an address where nothing listens is a failed connect as usual');

###########################################################################
# A name that stops resolving keeps its last addresses.

$since = $t->log_offset;
$off{'moving.test'} = 1;
write_hosts();
ok($t->waitforlog(qr/\[warn\].*dns: cannot resolve moving\.test: [^;]+; keeping its last addresses: 127\.0\.0\.3$/m,
    since => $since), 'a failed lookup is a warning naming the kept addresses');
is_deeply(tally('moving', 5), { three => 5 },
    'requests still reach the last good address');
sleep 1;    # several refreshes: a measurement window, not a wait
is(scalar(() = $t->log(since => $since) =~ /cannot resolve moving\.test/g),
    1, 'the warning is logged once, not at every refresh');

$since = $t->log_offset;
is($t->reload, 1, 'a reload starts generation 2');
ok(waitfor(sub { $t->log(since => $since)
        =~ /control process \(pid \d+, generation 1\) exited/ }, 5),
    'the old control process is gone');
is_deeply(tally('moving', 5), { three => 5 },
    'the new generation still has the last good address');
unlike($t->log(since => $since), qr/cannot resolve moving\.test/,
    'and does not warn again');

$since = $t->log_offset;
delete $off{'moving.test'};
write_hosts();
ok($t->waitforlog(qr/\[notice\].*dns: moving\.test resolves again: 127\.0\.0\.3$/m,
    since => $since), 'the name resolving again is a notice');
is_deeply(tally('moving', 5), { three => 5 }, 'requests carry on');
ok(waitfor(sub { $t->read_file('access.log')
        =~ /host="moving" upstream="moving\.test:$p2 \(127\.0\.0\.3:$p2\)"/ }, 5),
    'the access log names the host name and the address used');
like($t->log, qr/connect\(\) to dead\.test:$p6 \(127\.0\.0\.9:$p6\) failed/,
    'so does the error log');

$t->stop_and_check;

###########################################################################
# A resolver that never answers (a socket of ours that reads nothing)
# holds one name's lookup for its whole 30 s timeout: the control process
# goes on with every other name, reports the slow one after 10 s, and
# stops at once with the lookup still out.

my $hole = IO::Socket::INET->new(LocalAddr => '127.1.2.3', LocalPort => 53,
    Proto => 'udp');
unless ($hole && -e '/etc/resolv.conf') {
    done_testing();
    diag('skipped the hanging resolver: '
        . ($hole ? 'no /etc/resolv.conf to replace' : "127.1.2.3:53: $!"));
    exit 0;
}

my $t2 = Test::Meshgate->new;
my $dir2 = $t2->testdir;
%hosts = ('quick.test' => [ '127.0.0.2' ]);
@order = ('quick.test');
%off = ();
$hosts_file = "$dir2/hosts";
write_hosts();
# The hosts file first, then the resolver, which only we listen on.
$t2->write_file('nsswitch.conf', "hosts: files dns\n");
$t2->write_file('resolv.conf', "nameserver 127.1.2.3\n"
    . "options timeout:30 attempts:1\n");
chmod 0644, "$dir2/nsswitch.conf", "$dir2/resolv.conf";
$t2->write_conf(<<"EOF");
gateway = { workers = 1; drain_timeout = 1.0; log_level = "info"; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/"; cluster = "slow"; } ); };
clusters = (
    { name = "slow"; retry = { attempts = 1; };
      endpoints = ( { address = "slow.test:$p6"; } ); },
    { name = "quick"; dns_refresh = 0.3;
      endpoints = ( { address = "quick.test:$p6"; } ); } );
EOF
$t2->run(wrap => [ 'unshare', '-m', 'sh', '-c', $script, 'sh', $hosts_file,
    "$dir2/nsswitch.conf", "$dir2/resolv.conf" ]);

ok($t2->waitforlog(qr/dns: quick\.test resolves to 127\.0\.0\.2$/m),
    'a name in the hosts file resolves');
$hole->blocking(0);
ok(waitfor(sub { defined $hole->recv(my $q, 512, 0) }, 5),
    'the other one reaches the resolver that never answers');
$since = $t2->log_offset;
$hosts{'quick.test'} = [ '127.0.0.3' ];
write_hosts();
ok($t2->waitforlog(qr/dns: quick\.test now resolves to 127\.0\.0\.3/,
    since => $since, timeout => 3),
    'while that lookup hangs, the other name is still refreshed');
my $t0 = time;
$r = parse_response(http_get('/x', host => 'slow'));
ok($r->{status} == 503 && time - $t0 < 2,
    'a request for the hanging name fails at once');
ok($t2->waitforlog(qr/\[warn\].*dns: cannot resolve slow\.test: no answer within 10 s; no address known yet/,
    timeout => 15), 'after 10 s without an answer, a warning');
$t0 = time;
$t2->stop_and_check;
cmp_ok(time - $t0, '<', 5, 'meshgate stops at once, the lookup still out');
done_testing();
