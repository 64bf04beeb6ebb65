package Test::Regions;

# A multi-region test bed for meshgate: each region is a network namespace
# with its own meshgate and backends; a "wan" namespace joins them, and
# every byte between two regions goes through a relay that adds a fixed
# one-way delay (t/backend/delay-relay.py: the test kernels have no netem).
#
#   my $r = Test::Regions->new(regions => [qw(a b c)], delay_ms => 20);
#   $r->backend('a', port => 9001, name => 'a1');  # mg-backend in region a
#   my $t = $r->meshgate('a');        # Test::Meshgate running inside "a"
#   $t->write_conf(... front_proxy = "${\ $r->link_addr('a', 'b') }" ...);
#   $t->run;
#   my $res = $r->get('a', '/echo', port => port(8000), host => 'users');
#
# Layout, region number i = 1, 2, ... in the order given:
#   namespace "mg<pid>-<name>": lo up, veth "wan0" 10.77.i.2/24, route to
#     10.77.0.0/16 via 10.77.i.1;
#   namespace "mg<pid>-wan": veth "r-<name>" 10.77.i.1/24 per region, plus
#     10.77.i.(100+k) that the relay from region k uses as its source
#     towards region i (so region i's logs show who called); no
#     forwarding, so regions reach each other only through the relays;
#   relay k->i (one per directed link): listens on 10.77.k.1:(10000 +
#     100k + i) in the wan namespace and connects to 10.77.i.2:PEERING,
#     PEERING being port(8443) unless peering_port => N says otherwise.
# The root namespace is never changed. Everything is torn down at exit,
# also when the test dies or is stopped by a signal: meshgates stopped,
# processes started here killed by PID, namespaces deleted.
#
# Certificates (in dir(); all but the CA keys are copied into each
# meshgate's test dir):
# mesh-ca.crt/.key; gw-<name>.crt/.key per region (CN and SAN
# "gw.<name>.mesh", for server and client use); stranger.crt/.key, signed
# by stranger-ca.crt, claiming "gw.a.mesh" (only its CA is wrong).
#
# Methods: names, ns, wan_ns, addr, wan_addr, link_addr, relay,
# relay_source, relay_log, relay_pid, delay_ms, dir, exec, capture,
# spawn, kill_pid, alive, log_of, backend, restart, meshgate, in_ns, get,
# curl, start_clients, wait_clients, cleanup, leftovers.
#
# Needs root, "ip netns", /usr/bin/python3, openssl and curl; skips the
# test (skip_all) with the reason otherwise.

use strict;
use warnings;

use File::Copy qw(copy);
use File::Temp qw(tempdir);
use JSON::PP ();
use POSIX qw(:sys_wait_h);
use Test::More ();
use Time::HiRes qw(time sleep);
use Test::Meshgate;

our $PYTHON = '/usr/bin/python3';
our $NET = '10.77';

my @beds;          # every test bed, for the END teardown
my $owner_pid = $$;

sub _diag { Test::More::diag(@_) if $ENV{TEST_MESHGATE_VERBOSE} }

###########################################################################
# Setup

sub new {
    my ($class, %o) = @_;
    my @names = @{$o{regions} || [qw(a b c)]};
    for (@names) {
        die "region name \"$_\": a lowercase letter, then up to 7 letters"
            . " or digits\n" unless /^[a-z][a-z0-9]{0,7}$/;
    }
    die "region names \"wan\" and \"probe\" are taken\n"
        if grep { $_ eq "wan" || $_ eq "probe" } @names;
    die "at most 50 regions\n" if @names > 50;

    if (my $why = _unusable()) {
        Test::More::plan(skip_all => $why);
    }

    my $dir = tempdir('meshgate-regions-XXXXXXXXXX', TMPDIR => 1,
        CLEANUP => $ENV{TEST_MESHGATE_LEAVE} ? 0 : 1);
    chmod 0755, $dir;
    Test::More::diag("regions dir: $dir") if $ENV{TEST_MESHGATE_LEAVE};

    my $self = bless {
        names => \@names,
        index => { map { $names[$_] => $_ + 1 } 0 .. $#names },
        prefix => "mg$$-",
        delay_ms => $o{delay_ms} // 20,
        peering_port => port($o{peering_port} // 8443),
        dir => $dir,
        owner => $$,
        namespaces => [],    # created, in order
        procs => {},         # pid -> { ns, cmd, log, status }
        relays => {},        # "from to" -> { addr, pid, log, source }
        meshgates => {},     # region -> Test::Meshgate
        nrun => 0,
    }, $class;
    push @beds, $self;

    # A test stopped by a signal still runs END, which cleans up.
    for my $sig (qw(TERM INT HUP)) {
        next if defined $SIG{$sig} && $SIG{$sig} ne 'DEFAULT';
        $SIG{$sig} = sub {
            Test::More::diag("test stopped by SIG$sig") if $$ == $owner_pid;
            exit 128 + ($sig eq 'TERM' ? 15 : $sig eq 'INT' ? 2 : 1);
        };
    }

    _remove_stale();
    $self->_build;
    $self->_make_certs;
    $self->_start_relays unless defined $o{relays} && !$o{relays};
    return $self;
}

# Why this machine cannot run the test bed, or undef.
sub _unusable {
    return 'needs root for network namespaces' if $> != 0;
    for my $tool (qw(ip openssl curl)) {
        return "needs $tool" unless grep { -x "$_/$tool" }
            split /:/, ($ENV{PATH} || '/usr/sbin:/usr/bin:/sbin:/bin');
    }
    return "needs $PYTHON for the delay relay" unless -x $PYTHON;
    my $probe = "mg$$-probe";
    my $out = `ip netns add $probe 2>&1`;
    return "ip netns is unusable: $out" if $?;
    $out = `ip -n $probe link set lo up 2>&1`;
    my $bad = $? ? "ip -n $probe link set lo up: $out" : undef;
    system('ip', 'netns', 'delete', $probe);
    return $bad ? "ip netns is unusable: $bad" : undef;
}

# Namespaces of runs that died without their teardown (SIGKILL): deleted
# when their process is gone and nothing runs inside.
sub _remove_stale {
    for my $ns (_netns_list()) {
        next unless $ns =~ /^mg(\d+)-[a-z][a-z0-9]*$/;
        next if $1 == $$ || kill(0, $1);
        my $pids = `ip netns pids $ns 2>/dev/null`;
        next if $pids =~ /\d/;
        _diag("removing stale namespace $ns");
        system('ip', 'netns', 'delete', $ns);
    }
}

sub _netns_list {
    my @ns;
    for my $l (split /\n/, `ip netns list 2>/dev/null`) {
        push @ns, $1 if $l =~ /^(\S+)/;
    }
    return @ns;
}

# ip(@args): runs "ip @args", dies with its output on failure.
sub _ip {
    my (@args) = @_;
    my $out = `ip @args 2>&1`;
    die "ip @args: $out" if $?;
    return $out;
}

sub _build {
    my ($self) = @_;
    my $wan = $self->wan_ns;
    for my $ns ((map { $self->ns($_) } $self->names), $wan) {
        _ip('netns', 'add', $ns);
        push @{$self->{namespaces}}, $ns;
        _ip('-n', $ns, 'link', 'set', 'lo', 'up');
    }
    for my $r ($self->names) {
        my $i = $self->{index}{$r};
        my $ns = $self->ns($r);
        # Created inside the region with its peer inside the wan: the root
        # namespace never holds either end.
        _ip('-n', $ns, 'link', 'add', 'wan0', 'type', 'veth', 'peer',
            'name', "r-$r", 'netns', $wan);
        _ip('-n', $ns, 'addr', 'add', $self->addr($r) . '/24', 'dev',
            'wan0');
        _ip('-n', $wan, 'addr', 'add', $self->wan_addr($r) . '/24', 'dev',
            "r-$r");
        for my $from ($self->names) {
            next if $from eq $r;
            _ip('-n', $wan, 'addr', 'add',
                $self->relay_source($from, $r) . '/32', 'dev', "r-$r");
        }
        _ip('-n', $ns, 'link', 'set', 'wan0', 'up');
        _ip('-n', $wan, 'link', 'set', "r-$r", 'up');
        _ip('-n', $ns, 'route', 'add', "$NET.0.0/16", 'via',
            $self->wan_addr($r));
    }
    # Regions must not reach each other around the relays.
    my ($st, $fwd) = $self->capture('wan', 'cat',
        '/proc/sys/net/ipv4/ip_forward');
    if ($st != 0 || $fwd !~ /^0/) {
        $self->exec('wan', 'sh', '-c',
            'echo 0 > /proc/sys/net/ipv4/ip_forward') == 0
            or die "cannot turn forwarding off in $wan\n";
    }
}

sub _openssl {
    my ($self, $args) = @_;
    my $d = $self->{dir};
    system("openssl $args >>$d/openssl.log 2>&1") == 0
        or die "openssl $args failed:\n"
            . Test::Meshgate::read_file("$d/openssl.log");
}

sub _make_ca {
    my ($self, $name, $cn) = @_;
    my $d = $self->{dir};
    $self->_openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256"
        . " -nodes -subj '/CN=$cn' -days 2 -keyout $d/$name.key"
        . " -out $d/$name.crt");
}

sub _make_cert {
    my ($self, $name, $cn, $ca) = @_;
    my $d = $self->{dir};
    $self->_openssl("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
        . " -subj '/CN=$cn' -addext 'subjectAltName=DNS:$cn'"
        . " -addext 'extendedKeyUsage=serverAuth,clientAuth'"
        . " -addext 'keyUsage=critical,digitalSignature'"
        . " -keyout $d/$name.key -out $d/$name.csr");
    $self->_openssl("x509 -req -in $d/$name.csr -CA $d/$ca.crt"
        . " -CAkey $d/$ca.key -CAcreateserial -days 2 -copy_extensions copy"
        . " -out $d/$name.crt");
    unlink "$d/$name.csr";
}

sub _make_certs {
    my ($self) = @_;
    $self->_make_ca('mesh-ca', 'meshgate test mesh CA');
    $self->_make_cert("gw-$_", "gw.$_.mesh", 'mesh-ca') for $self->names;
    $self->_make_ca('stranger-ca', 'meshgate test stranger CA');
    $self->_make_cert('stranger', 'gw.a.mesh', 'stranger-ca');
}

sub _relay_port {
    my ($self, $from, $to) = @_;
    return 10000 + 100 * $self->{index}{$from} + $self->{index}{$to};
}

sub _start_relays {
    my ($self) = @_;
    for my $from ($self->names) {
        for my $to ($self->names) {
            next if $from eq $to;
            $self->relay($from, $to);
        }
    }
}

# relay(FROM, TO, port => REAL_PORT, delay_ms => MS): the relay for the
# link FROM->TO, started on first use ("IP:PORT" to connect to from
# region FROM). Without port it forwards to TO's peering port; with one, a
# further relay is started on the next free wan port (its address is
# returned; relay_log/relay_pid take the same arguments).
sub relay {
    my ($self, $from, $to, %o) = @_;
    $self->_check($from);
    $self->_check($to);
    die "relay: $from to itself\n" if $from eq $to;
    my $target = $o{port} // $self->{peering_port};
    my $key = "$from $to $target";
    return $self->{relays}{$key}{addr} if $self->{relays}{$key};

    my $lport = $self->_relay_port($from, $to);
    my %used = map { $_->{lport} => 1 } values %{$self->{relays}};
    $lport += 10000 while $used{$lport};
    die "relay: no wan port left\n" if $lport > 65000;
    my $listen = $self->wan_addr($from) . ":$lport";
    my $connect = $self->addr($to) . ":$target";
    my $log = "$self->{dir}/relay-$from-$to-$target.log";
    my $pid = $self->spawn('wan', $PYTHON,
        "$Test::Meshgate::TDIR/backend/delay-relay.py",
        '--listen', $listen, '--connect', $connect,
        '--source', $self->relay_source($from, $to),
        '--delay-ms', $o{delay_ms} // $self->{delay_ms},
        '--log', $log, '--watch-parent');
    my $up = waitfor(sub {
        return 1 if $self->log_of($pid) =~ /^listening /m;
        return -1 unless $self->alive($pid);
        return 0;
    }, 10);
    die "relay $from->$to did not start:\n" . $self->log_of($pid)
        unless $up && $up == 1;
    $self->{relays}{$key} = { addr => $listen, pid => $pid, log => $log,
        lport => $lport };
    return $listen;
}

sub _relay_entry {
    my ($self, $from, $to, %o) = @_;
    my $key = "$from $to " . ($o{port} // $self->{peering_port});
    return $self->{relays}{$key} || die "no relay $key\n";
}

###########################################################################
# Names and addresses

sub names { @{$_[0]->{names}} }
sub dir { $_[0]->{dir} }
sub delay_ms { $_[0]->{delay_ms} }
sub peering_port { $_[0]->{peering_port} }

sub _check {
    my ($self, $r) = @_;
    die "no region \"$r\"\n" unless $r eq 'wan' || $self->{index}{$r};
}

# ns('a'): the namespace of region a; ns('wan') that of the wan.
sub ns {
    my ($self, $r) = @_;
    $self->_check($r);
    return $self->{prefix} . $r;
}

sub wan_ns { $_[0]->{prefix} . 'wan' }

# addr('a'): region a's own address (its end of the link to the wan).
sub addr {
    my ($self, $r) = @_;
    $self->_check($r);
    return "$NET.$self->{index}{$r}.2";
}

# wan_addr('a'): the wan's end of region a's link.
sub wan_addr {
    my ($self, $r) = @_;
    $self->_check($r);
    return "$NET.$self->{index}{$r}.1";
}

# relay_source('a', 'b'): the address region b sees connections from a's
# relay come from.
sub relay_source {
    my ($self, $from, $to) = @_;
    $self->_check($from);
    $self->_check($to);
    return "$NET.$self->{index}{$to}." . (100 + $self->{index}{$from});
}

# link_addr('a', 'b'): "IP:PORT" that region a uses for region b's front
# proxy: the delay relay to b's peering listener.
sub link_addr {
    my ($self, $from, $to) = @_;
    return $self->relay($from, $to);
}

sub relay_pid { my $s = shift; $s->_relay_entry(@_)->{pid} }

# relay_log(FROM, TO): the relay's connection log (one line per
# connection opened and closed, with byte counts).
sub relay_log {
    my $s = shift;
    return Test::Meshgate::read_file($s->_relay_entry(@_)->{log});
}

###########################################################################
# Processes

# exec(REGION, @cmd): runs @cmd inside REGION ('wan' for the wan) and
# waits for it (60 s at most, then it is killed); returns its exit code
# (-1 if killed). Its output goes to dir()/run-N.out.
sub exec {
    my ($self, $r, @cmd) = @_;
    my ($st) = $self->capture($r, @cmd);
    return $st;
}

# capture(REGION, @cmd): like exec; returns (exit code, stdout, stderr).
# A hash reference as the last argument may set timeout => seconds.
sub capture {
    my ($self, $r, @cmd) = @_;
    my %o = ref $cmd[-1] eq 'HASH' ? %{pop @cmd} : ();
    my $n = ++$self->{nrun};
    my ($out, $err) = ("$self->{dir}/run-$n.out", "$self->{dir}/run-$n.err");
    my $pid = fork();
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out or POSIX::_exit(127);
        open STDERR, '>', $err or POSIX::_exit(127);
        { no warnings 'exec';
          CORE::exec('ip', 'netns', 'exec', $self->ns($r), @cmd); }
        POSIX::_exit(127);
    }
    my $st;
    waitfor(sub {
        return 0 unless waitpid($pid, WNOHANG) == $pid;
        $st = $?;
        return 1;
    }, $o{timeout} || 60);
    unless (defined $st) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
        $st = -1;
    }
    my $code = $st == -1 ? -1 : ($st & 127) ? -1 : $st >> 8;
    return wantarray ? ($code, Test::Meshgate::read_file($out),
        Test::Meshgate::read_file($err)) : $code;
}

# spawn(REGION, @cmd): starts @cmd inside REGION in the background; its
# output goes to a log (log_of(PID)). Returns the PID, which is the
# command's own ("ip netns exec" execs it). Killed at teardown.
sub spawn {
    my ($self, $r, @cmd) = @_;
    my $n = ++$self->{nrun};
    my $log = "$self->{dir}/spawn-$n.log";
    my $pid = fork();
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(127);
        # SIGTERM if the test is killed before its teardown could run.
        syscall(Test::Meshgate::_syscall_nr('prctl'), 1, 15);
        { no warnings 'exec';
          CORE::exec('ip', 'netns', 'exec', $self->ns($r), @cmd); }
        print STDERR "exec @cmd: $!\n";
        POSIX::_exit(127);
    }
    $self->{procs}{$pid} = { ns => $r, cmd => \@cmd, log => $log };
    _diag("spawned $pid in $r: @cmd");
    return $pid;
}

sub log_of {
    my ($self, $pid) = @_;
    my $p = $self->{procs}{$pid} or return '';
    return Test::Meshgate::read_file($p->{log});
}

# alive(PID): 1 while a process started here runs (reaps it once done).
sub alive {
    my ($self, $pid) = @_;
    my $p = $self->{procs}{$pid} or return 0;
    return 0 if defined $p->{status};
    my $w = waitpid($pid, WNOHANG);
    return 1 if $w == 0;
    $p->{status} = $w == $pid ? $? : -1;
    return 0;
}

# kill_pid(PID, signal => 'TERM'): stops a process started here: the
# signal, up to 5 s, then KILL. Returns its wait status.
sub kill_pid {
    my ($self, $pid, %o) = @_;
    my $p = $self->{procs}{$pid} or die "kill_pid: $pid was not started here\n";
    return $p->{status} unless $self->alive($pid);
    kill $o{signal} || 'TERM', $pid;
    unless (waitfor(sub { !$self->alive($pid) }, $o{timeout} || 5)) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
        $p->{status} = $?;
    }
    _diag("stopped $pid");
    return $p->{status};
}

# backend(REGION, port => N, name => NAME, listen => IP, verbose => 0):
# t/backend/mg-backend.pl inside REGION on IP (127.0.0.1):port(N), its
# requests logged (log_of(PID)) unless verbose => 0. Returns its PID once
# it accepts connections.
sub backend {
    my ($self, $r, %o) = @_;
    my $ip = $o{listen} // '127.0.0.1';
    my $addr = "$ip:" . port($o{port} // 9001);
    my @cmd = ($^X, "$Test::Meshgate::TDIR/backend/mg-backend.pl",
        '--listen', $addr, '--watch-parent');
    push @cmd, '--name', $o{name} if defined $o{name};
    push @cmd, '--verbose' unless defined $o{verbose} && !$o{verbose};
    my $pid = $self->spawn($r, @cmd);
    $self->{procs}{$pid}{backend} = { %o, region => $r };
    $self->in_ns($r, sub { waitforsocket($addr, $o{timeout} || 10) })
        or die "backend $addr in $r did not start:\n" . $self->log_of($pid);
    return $pid;
}

# restart(PID): the backend PID (stopped by now, or stopped here) started
# again with the same options; returns the new PID.
sub restart {
    my ($self, $pid) = @_;
    my $p = $self->{procs}{$pid} or die "restart: unknown $pid\n";
    my $b = $p->{backend} or die "restart: $pid is not a backend\n";
    $self->kill_pid($pid);
    my %o = %$b;
    my $r = delete $o{region};
    return $self->backend($r, %o);
}

###########################################################################
# meshgate and clients

# meshgate(REGION): the Test::Meshgate object of the region's meshgate
# (made on first use): its binary and helpers run inside the region, and
# its test dir holds a copy of the certificates, so a configuration names
# them as "mesh-ca.crt", "gw-a.crt", ...
sub meshgate {
    my ($self, $r) = @_;
    $self->_check($r);
    return $self->{meshgates}{$r} if $self->{meshgates}{$r};
    my $t = Test::Meshgate->new(netns => $self->ns($r));
    my @certs = (glob("$self->{dir}/*.crt"), glob("$self->{dir}/*.key"));
    # Said at once rather than as "No such file" from meshgate later.
    die "no certificates in $self->{dir} to give region ${r}'s meshgate\n"
        unless grep { m{/mesh-ca\.crt$} } @certs;
    for my $f (@certs) {
        (my $base = $f) =~ s{.*/}{};
        next if $base =~ /-ca\.key$/;    # signing stays out of reach
        copy($f, $t->testdir . "/$base") or die "copy $f: $!\n";
    }
    return $self->{meshgates}{$r} = $t;
}

# in_ns(REGION, sub { ... }): runs Perl code inside REGION (sockets made
# there stay there); returns what it returns.
sub in_ns {
    my ($self, $r, $code) = @_;
    return Test::Meshgate::netns_do($self->ns($r), $code);
}

# get(REGION, PATH, port => P, host => H, headers => [...], timeout => S,
# method => M): one HTTP/1.1 request from inside REGION to 127.0.0.1:P
# (Test::Meshgate::http_get); the parsed response with elapsed =>
# seconds, or undef with error => why when nothing came back.
sub get {
    my ($self, $r, $path, %o) = @_;
    my $t0 = time;
    my $raw = $self->in_ns($r, sub {
        local $Test::Meshgate::ERROR = '';
        my $x = http_get($path, quiet => 1, %o);
        return defined $x ? $x : "\0$Test::Meshgate::ERROR";
    });
    my $elapsed = time - $t0;
    if ($raw =~ /^\0(.*)/s || $raw eq '') {
        return { status => 0, error => $1 || 'no response',
            headers => {}, body => '', elapsed => $elapsed };
    }
    my $res = parse_response($raw);
    $res->{elapsed} = $elapsed;
    $res->{status} //= 0;
    return $res;
}

# curl(REGION, @args): curl inside REGION (-sS, --max-time 10 unless
# given); returns { exit, status, time (time_total), connect_time,
# tls_time, headers => { lc name => value }, body, stderr }.
sub curl {
    my ($self, $r, @args) = @_;
    my $n = ++$self->{nrun};
    my ($body, $head) = ("$self->{dir}/curl-$n.body",
        "$self->{dir}/curl-$n.head");
    my @cmd = ('curl', '-sS', '-o', $body, '-D', $head, '-w',
        '%{http_code} %{time_total} %{time_connect} %{time_appconnect}');
    push @cmd, '--max-time', '10' unless grep { $_ eq '--max-time' } @args;
    my ($st, $out, $err) = $self->capture($r, @cmd, @args);
    my ($code, $total, $conn, $tls) = split ' ', $out;
    my %h;
    # With redirects or 1xx there are several heads: keep the last.
    my @heads = split /\r?\n\r?\n/, Test::Meshgate::read_file($head);
    for my $l (split /\r?\n/, $heads[-1] // '') {
        next unless $l =~ /^([^:\s]+):\s*(.*?)\s*$/;
        my $k = lc $1;
        $h{$k} = exists $h{$k} ? "$h{$k}, $2" : $2;
    }
    return { exit => $st, status => $code // 0, time => $total,
        connect_time => $conn, tls_time => $tls, headers => \%h,
        body => Test::Meshgate::read_file($body), stderr => $err };
}

# start_clients(REGION, clients => N, count => M, duration => S,
# interval => S, code => sub { my ($client, $i) = @_; ...; return
# { ... } }): N processes inside REGION, each calling |code| M times (or
# until S seconds passed, whichever is first; |interval| seconds at least
# between calls); each result (a hash, JSON-encodable) is kept with t0 and
# t1 (start and end times) and client. Returns a handle for wait_clients.
sub start_clients {
    my ($self, $r, %o) = @_;
    my $n = ++$self->{nrun};
    my @kids;
    for my $c (1 .. ($o{clients} || 1)) {
        my $file = "$self->{dir}/clients-$n-$c.json";
        my $pid = fork();
        die "fork: $!\n" unless defined $pid;
        if ($pid == 0) {
            my $ok = eval {
                $self->in_ns($r, sub {
                    open my $fh, '>', $file or die "$file: $!\n";
                    $fh->autoflush(1);
                    my $end = time + ($o{duration} || 60);
                    for my $i (1 .. ($o{count} || 1)) {
                        last if time > $end;
                        my $t0 = time;
                        my $res = $o{code}->($c, $i) || {};
                        print $fh JSON::PP::encode_json({ %$res,
                            client => $c, i => $i, t0 => $t0,
                            t1 => time }), "\n";
                        my $left = $t0 + ($o{interval} || 0) - time;
                        sleep $left if $left > 0;
                    }
                });
                1;
            };
            print STDERR "client $c: $@" unless $ok;
            POSIX::_exit($ok ? 0 : 1);
        }
        push @kids, [ $pid, $file ];
    }
    return { kids => \@kids, limit => ($o{duration} || 60) + 30 };
}

# wait_clients(HANDLE): waits for them (bounded: their duration + 30 s,
# then they are killed); returns the results of all, in start order.
sub wait_clients {
    my ($self, $h) = @_;
    my %left = map { $_->[0] => 1 } @{$h->{kids}};
    waitfor(sub {
        for my $pid (keys %left) {
            delete $left{$pid} if waitpid($pid, WNOHANG) != 0;
        }
        return !%left;
    }, $h->{limit});
    for my $pid (keys %left) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }
    my @res;
    for my $k (@{$h->{kids}}) {
        for my $l (split /\n/, Test::Meshgate::read_file($k->[1])) {
            my $e = eval { JSON::PP::decode_json($l) } or next;
            push @res, $e;
        }
    }
    return [ sort { $a->{t0} <=> $b->{t0} } @res ];
}

###########################################################################
# Teardown

# Processes (by PID) whose network namespace is one of ours.
sub leftovers {
    my ($self) = @_;
    my %ino;
    for my $ns (@{$self->{namespaces}}) {
        my @st = stat "/run/netns/$ns" or next;
        $ino{"$st[0] $st[1]"} = $ns;
    }
    my @left;
    opendir my $d, '/proc' or return;
    for my $pid (grep { /^\d+$/ } readdir $d) {
        my @st = stat "/proc/$pid/ns/net" or next;
        my $ns = $ino{"$st[0] $st[1]"} or next;
        my $comm = Test::Meshgate::read_file("/proc/$pid/comm");
        chomp $comm;
        push @left, "$pid ($comm) in $ns";
    }
    return @left;
}

# cleanup(): stops the meshgates, kills every process started here (by
# PID), waits (bounded) until nothing runs in our namespaces and deletes
# them. Returns what is left over (processes or namespaces; none is
# good). Runs by itself at exit.
sub cleanup {
    my ($self) = @_;
    return () if $self->{owner} != $$ || $self->{cleaned}++;
    for my $r (sort keys %{$self->{meshgates}}) {
        my $t = $self->{meshgates}{$r};
        eval { $t->stop; $t->stop_daemons; 1 }
            or Test::More::diag("stopping meshgate of $r: $@");
    }
    for my $pid (sort { $b <=> $a } keys %{$self->{procs}}) {
        eval { $self->kill_pid($pid); 1 }
            or Test::More::diag("stopping $pid: $@");
    }
    # Children of those (connection processes of a backend, workers)
    # exit on their own once their parent is gone.
    my @left;
    waitfor(sub { !(@left = $self->leftovers) }, 10);
    Test::More::diag("still running in our namespaces: $_") for @left;
    for my $ns (reverse @{$self->{namespaces}}) {
        my $out = `ip netns delete $ns 2>&1`;
        Test::More::diag("ip netns delete $ns: $out") if $?;
    }
    my %ours = map { $_ => 1 } @{$self->{namespaces}};
    push @left, map { "namespace $_" } grep { $ours{$_} } _netns_list();
    $self->{namespaces} = [];
    return @left;
}

END {
    my $rc = $?;
    if ($$ == $owner_pid) {
        for my $bed (reverse @beds) {
            local $?;
            eval { $bed->cleanup; 1 } or Test::More::diag("cleanup: $@");
        }
    }
    $? = $rc;
}

1;
