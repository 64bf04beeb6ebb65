package Test::Meshgate;

# Black-box test harness for meshgate, modelled on nginx-tests' Test::Nginx.
#
# Each Test::Meshgate object owns a private temp dir, the meshgate master it
# started and every helper daemon (backends, nginx) it started. Teardown
# stops all of them by PID and fails when the error log shows an alert or a
# sanitizer report, or when meshgate died on a signal.
#
# A test reads:
#
#   my $t = Test::Meshgate->new;          # skips without MESHGATE_BINARY
#   $t->write_conf(<<'EOF');              # %%PORT_8000%%, %%TESTDIR%%
#   ... libconfig text ...
#   EOF
#   $t->run_backend(port => 8081, name => 'b1');
#   $t->run;                              # waits for listeners + generation 1
#   like(http_get('/echo', host => 'a.test'), qr/ 200 /, 'it serves');
#   is($t->reload, 1, 'it reloads');
#   $t->stop_and_check;                   # the teardown check is a test too
#   done_testing();                       # (or $t->plan(N) up front)
#
# Methods: testdir, write_conf, write_file, conf_path, run, reload, signal,
# stop, wait_exit, is_running, master_pid, worker_pids, generation, log,
# log_offset, waitforlog, run_binary, run_daemon, daemon_log, stop_daemons,
# run_backend, run_nginx, stop_and_check, plan. Functions (exported): port,
# http, http_get, parse_response, waitforsocket, waitfor, read_file,
# pattern_bytes. Also Test::Meshgate::Client (keep-alive client),
# children_of, proc_title, proc_uid, tcp_sockets and worker_sockets
# (which TCP connections each worker holds, from /proc).
#
# Test::Meshgate->new(netns => NAME) runs the binary and every helper of
# that object inside the network namespace NAME ("ip netns exec NAME"),
# and waits for their 127.0.0.1 sockets there; netns_do(NAME, sub {...})
# runs test code inside it (sockets made there stay there).
#
# Switches (environment):
#   MESHGATE_BINARY        the binary under test; tests skip without it
#   TEST_MESHGATE_LEAVE    keep the temp dir (its path is printed)
#   TEST_MESHGATE_CATLOG   print the meshgate log at teardown
#   TEST_MESHGATE_VERBOSE  print progress
#   TEST_MESHGATE_NGINX    nginx binary for run_nginx (/usr/sbin/nginx)
#
# Only core modules are used.

use strict;
use warnings;

use Exporter qw(import);
use Cwd qw(abs_path);
use Errno qw(EINTR EAGAIN EWOULDBLOCK EINPROGRESS ECONNREFUSED);
use Fcntl qw(:flock O_RDWR O_CREAT);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Socket qw(SOL_SOCKET SO_LINGER IPPROTO_TCP TCP_NODELAY);
use Test::More ();
use Time::HiRes qw(time sleep);

our @EXPORT = qw(port http http_get parse_response waitforsocket waitfor
    read_file pattern_bytes);
our @EXPORT_OK = qw(log_verbose);

our $VERSION = '1.0';

# Where t/ lives, so helpers find t/backend/mg-backend.pl from any cwd.
our $TDIR = abs_path(dirname(__FILE__) . '/../..');

my %ports;        # symbolic number -> real port, stable in this process
my @port_locks;   # [ path, flock handle ]: our ports, against other runs
my @instances;    # every Test::Meshgate object, for the END teardown
my $owner_pid = $$;

sub log_verbose {
    return unless $ENV{TEST_MESHGATE_VERBOSE};
    Test::More::diag(join '', @_);
}

###########################################################################
# Object life cycle

sub new {
    my ($class, %opts) = @_;

    my $bin = $ENV{MESHGATE_BINARY};
    unless (defined $bin && length $bin && -f $bin && -x _) {
        Test::More::plan(skip_all => 'MESHGATE_BINARY is unset or not '
            . 'executable' . (defined $bin ? " ($bin)" : ''));
    }

    my $dir = tempdir('meshgate-test-XXXXXXXXXX', TMPDIR => 1,
        CLEANUP => $ENV{TEST_MESHGATE_LEAVE} ? 0 : 1);
    # Workers may run as an unprivileged user: let them reach the files
    # (writes stay root-only unless a test opens them up).
    chmod 0755, $dir;

    my $self = bless {
        testdir => $dir,
        binary => abs_path($bin),
        pid => undef,          # meshgate master
        exit_status => undef,  # $? of the master once reaped
        daemons => [],         # helper PIDs
        checked => 0,
        conf_files => {},      # relpath -> substituted text
        error_log => $opts{error_log},
        netns => $opts{netns},  # run everything inside this namespace
        owner => $$,
        ndaemon => 0,
    }, $class;
    push @instances, $self;

    # A test stopped by a signal (a timeout, ^C) still runs the teardown,
    # so nothing it started outlives it.
    for my $sig (qw(TERM INT HUP)) {
        next if defined $SIG{$sig} && $SIG{$sig} ne 'DEFAULT';
        $SIG{$sig} = sub {
            Test::More::diag("test stopped by SIG$sig") if $$ == $owner_pid;
            exit 128 + ($sig eq 'TERM' ? 15 : $sig eq 'INT' ? 2 : 1);
        };
    }

    Test::More::diag("testdir: $dir") if $ENV{TEST_MESHGATE_LEAVE};
    log_verbose("testdir $dir, binary $self->{binary}");
    return $self;
}

# plan(N): Test::More's plan with one more test, the teardown check, which
# then runs by itself at exit if the test did not call stop_and_check.
# Tests that end with done_testing() call stop_and_check themselves.
sub plan {
    my ($self, $n) = @_;
    $self->{auto_check} = 1;
    Test::More::plan(tests => $n + 1);
    return $self;
}

sub testdir { $_[0]->{testdir} }
sub netns { $_[0]->{netns} }

# @cmd as run inside this object's network namespace, if it has one
# (called in the forked child just before exec). "ip netns exec" execs the
# command in place, so the PID stays the one we forked and waitpid,
# signals and children_of work as without it. The child also gets SIGTERM
# if the test dies without its teardown (SIGKILL), so no namespace is
# kept busy by it.
sub _in_netns_cmd {
    my ($self, @cmd) = @_;
    return @cmd unless defined $self->{netns};
    syscall(_syscall_nr('prctl'), 1, 15);    # PR_SET_PDEATHSIG, SIGTERM
    return ('ip', 'netns', 'exec', $self->{netns}, @cmd);
}

my %syscall_nr;
sub _syscall_nr {
    my ($name) = @_;
    return $syscall_nr{$name} if $syscall_nr{$name};
    require Config;
    my $arch = $Config::Config{archname};
    my %nr = (x86_64 => { setns => 308, prctl => 157 },
        aarch64 => { setns => 268, prctl => 167 });
    my ($which) = $arch =~ /^(x86_64|aarch64)/;
    my $n = $which ? $nr{$which}{$name}
        : eval qq{ package Test::Meshgate::Syscall; require 'syscall.ph';
                   SYS_$name() };
    die "no syscall number for $name on $arch\n" unless $n;
    return $syscall_nr{$name} = $n;
}

sub _setns {
    my ($fh, $what) = @_;
    # CLONE_NEWNET: the descriptor must be a network namespace.
    syscall(_syscall_nr('setns'), fileno($fh), 0x40000000) == 0
        or die "setns($what): $!\n";
}

# netns_do(NAME, sub { ... }), or $t->netns_do(sub { ... }) for the
# object's namespace: runs the code with this process inside the network
# namespace NAME and then returns to the namespace it was in. Sockets the
# code creates stay in NAME for their whole life. Without a namespace the
# code just runs. Returns what the code returns (and dies if it dies).
sub netns_do {
    my ($ns, $code) = @_;
    $ns = $ns->{netns} if ref $ns && ref $ns ne 'CODE';
    return $code->() unless defined $ns;
    my $want = wantarray;
    open my $home, '<', '/proc/self/ns/net'
        or die "/proc/self/ns/net: $!\n";
    open my $there, '<', "/run/netns/$ns"
        or die "network namespace $ns: $!\n";
    _setns($there, $ns);
    my @r;
    my $ok = eval {
        @r = $want ? $code->() : scalar $code->();
        1;
    };
    my $err = $@;
    # Not getting back would run the rest of the test in the wrong place.
    _setns($home, 'back');
    die $err unless $ok;
    return $want ? @r : $r[0];
}
sub binary { $_[0]->{binary} }
sub master_pid { $_[0]->{pid} }

###########################################################################
# Ports

# port(8081) maps a symbolic number to a free 127.0.0.1 port, the same one
# for the whole test process. The kernel picks it (bind to port 0); a lock
# file keeps two concurrent test runs from being handed the same port after
# the probe socket is closed. Callable as a function or a method.
sub port {
    shift if ref $_[0];
    my ($num) = @_;
    die "port() needs a number\n" unless defined $num;
    return $ports{$num} if exists $ports{$num};

    my $lockdir = ($ENV{TMPDIR} || '/tmp') . '/meshgate-test-ports';
    unless (-d $lockdir) {
        mkdir $lockdir;
        chmod 01777, $lockdir;
    }
    my %taken = map { $_ => 1 } values %ports;

    for (1 .. 200) {
        my $probe = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
            LocalPort => 0, Proto => 'tcp', Listen => 1)
            or die "cannot bind a probe socket: $!\n";
        my $p = $probe->sockport();
        next if $taken{$p};
        my $lf;
        next unless sysopen($lf, "$lockdir/$p", O_RDWR | O_CREAT, 0666);
        unless (flock($lf, LOCK_EX | LOCK_NB)) {
            close $lf;
            next;
        }
        push @port_locks, [ "$lockdir/$p", $lf ];
        close $probe;
        $ports{$num} = $p;
        log_verbose("port($num) = $p");
        return $p;
    }
    die "cannot find a free port for $num\n";
}

###########################################################################
# Files

sub _subst {
    my ($self, $text) = @_;
    $text =~ s/%%PORT_(\d+)%%/port($1)/ge;
    $text =~ s/%%TESTDIR%%/$self->{testdir}/g;
    return $text;
}

sub write_file {
    my ($self, $rel, $text) = @_;
    $text = $self->_subst($text);
    my $path = $rel =~ m{^/} ? $rel : "$self->{testdir}/$rel";
    make_path(dirname($path));
    my $tmp = "$path.tmp.$$";
    open my $fh, '>', $tmp or die "cannot write $tmp: $!\n";
    print $fh $text;
    close $fh or die "cannot write $tmp: $!\n";
    rename $tmp, $path or die "cannot rename $tmp: $!\n";
    $self->{conf_files}{$rel} = $text;
    return $path;
}

sub write_conf {
    my ($self, $text) = @_;
    return $self->write_file('meshgate.conf', $text);
}

sub conf_path { "$_[0]->{testdir}/meshgate.conf" }

# read_file($path): the whole file, or '' if it does not exist. Relative
# paths are inside the test dir when called as a method.
sub read_file {
    my ($self, $path);
    if (ref $_[0]) { ($self, $path) = @_ } else { ($path) = @_ }
    $path = "$self->{testdir}/$path" if $self && $path !~ m{^/};
    open my $fh, '<', $path or return '';
    local $/;
    my $c = <$fh>;
    return defined $c ? $c : '';
}

# The current config text: meshgate.conf and conf.d/*.conf as on disk.
sub _conf_texts {
    my ($self) = @_;
    my @files = ($self->conf_path, sort glob("$self->{testdir}/conf.d/*.conf"));
    return map { read_file($_) } grep { -f $_ } @files;
}

# Every 127.0.0.1 listen address of the current config.
sub listen_addrs {
    my ($self) = @_;
    my %seen;
    my @a;
    for my $text ($self->_conf_texts) {
        $text =~ s/#[^\n]*//g;
        while ($text =~ /\blisten\s*=\s*"(127\.0\.0\.1:\d+)"/g) {
            push @a, $1 unless $seen{$1}++;
        }
    }
    return @a;
}

sub error_log_path {
    my ($self) = @_;
    return $self->{error_log} if defined $self->{error_log};
    for my $text ($self->_conf_texts) {
        $text =~ s/#[^\n]*//g;
        return $1 if $text =~ /\berror_log\s*=\s*"([^"]+)"/;
    }
    return "$self->{testdir}/stderr.log";
}

# The error log of meshgate (since byte offset |since| if given).
sub log {
    my ($self, %o) = @_;
    my $c = read_file($self->error_log_path);
    return $o{since} ? substr($c, $o{since} > length $c ? length $c
        : $o{since}) : $c;
}

sub log_offset { length $_[0]->log }

# Waits until the log matches |re| (after |since|); returns the match or ''.
sub waitforlog {
    my ($self, $re, %o) = @_;
    my $m = '';
    waitfor(sub {
        my $l = $self->log(since => $o{since} || 0);
        if ($l =~ /($re)/) { $m = $1; return 1 }
        return 0;
    }, $o{timeout} || 10);
    return $m;
}

###########################################################################
# meshgate

# run(%opts): starts "$MESHGATE_BINARY -c testdir/meshgate.conf" as a child
# and waits until every listener accepts TCP connections and the master has
# logged "generation N started". Options: args => [extra arguments],
# conf => other config path, error_log => path, wait => 0 (return at once),
# timeout => seconds (10), wrap => [CMD, ARGS...] to start it as "CMD
# ARGS... BINARY -c ..." (CMD must exec the rest in place, as unshare(1)
# does, so that the PID stays the master's).
sub run {
    my ($self, %o) = @_;
    die "meshgate already running (pid $self->{pid})\n"
        if $self->{pid} && !defined $self->{exit_status};

    $self->{error_log} = $o{error_log} if defined $o{error_log};
    my $conf = $o{conf} || $self->conf_path;
    my @cmd = ($self->{binary}, '-c', $conf, @{$o{args} || []});
    my $stderr = "$self->{testdir}/stderr.log";
    my $since = $self->log_offset;
    my $since_stderr = -s $stderr || 0;

    log_verbose("run: @cmd");
    my $pid = fork();
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $stderr or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(127);
        my @exec = $self->_in_netns_cmd(@{$o{wrap} || []}, @cmd);
        { no warnings q(exec); exec { $exec[0] } @exec; }
        print STDERR "exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    $self->{exit_status} = undef;
    $self->{checked} = 0;
    $self->{run_since} = $since;

    return $self if defined $o{wait} && !$o{wait};

    my $timeout = $o{timeout} || 10;
    my $deadline = time + $timeout;
    my $fail = sub {
        my ($why) = @_;
        my $log = read_file($stderr);
        $log = substr($log, $since_stderr) if length $log >= $since_stderr;
        my $elog = $self->error_log_path ne $stderr ? $self->log : '';
        die "meshgate: $why\n--- stderr.log ---\n$log"
            . ($elog ne '' ? "--- error log ---\n$elog" : '') . "\n";
    };

    for my $addr ($self->listen_addrs) {
        my $left = $deadline - time;
        until ($self->netns_do(sub { _try_connect($addr) })) {
            $fail->("exited with status " . _status_text($self->{exit_status})
                . " while starting") unless $self->is_running;
            $fail->("$addr not accepting after ${timeout}s")
                if time > $deadline;
            sleep 0.02;
        }
    }
    until ($self->log(since => $since) =~ /generation \d+ started/) {
        $fail->("exited with status " . _status_text($self->{exit_status})
            . " while starting") unless $self->is_running;
        $fail->("no \"generation N started\" line after ${timeout}s")
            if time > $deadline;
        sleep 0.02;
    }
    log_verbose("meshgate running, pid $pid");
    return $self;
}

# True while the master has not exited (reaps it when it has).
sub is_running {
    my ($self) = @_;
    return 0 unless $self->{pid};
    return 0 if defined $self->{exit_status};
    my $r = waitpid($self->{pid}, WNOHANG);
    if ($r == $self->{pid}) {
        $self->{exit_status} = $?;
        return 0;
    }
    return 1 if $r == 0;
    # Not our child any more (should not happen): ask the kernel.
    return kill(0, $self->{pid}) ? 1 : 0;
}

sub signal {
    my ($self, $sig) = @_;
    die "meshgate is not running\n" unless $self->is_running;
    log_verbose("signal $sig to $self->{pid}");
    return kill $sig, $self->{pid};
}

# reload(): SIGHUP, then wait for one more "reload: generation N started"
# or "reload failed" line. Returns 1 (started), 0 (failed) or undef (no
# answer within |timeout|).
sub reload {
    my ($self, %o) = @_;
    my $re = qr/reload: generation \d+ started|reload failed/;
    my $count = () = $self->log =~ /$re/g;
    $self->signal('HUP') or return undef;
    my $line;
    waitfor(sub {
        my @m = $self->log =~ /^.*(?:$re).*$/mg;
        return 0 unless @m > $count;
        $line = $m[$count];
        return 1;
    }, $o{timeout} || 10) or do {
        Test::More::diag("reload: no answer from meshgate");
        return undef;
    };
    log_verbose("reload: $line");
    return $line =~ /reload failed/ ? 0 : 1;
}

# The generation number of the last "generation N started" line.
sub generation {
    my ($self) = @_;
    my @g = $self->log =~ /generation (\d+) started/g;
    return @g ? $g[-1] : undef;
}

# stop(%opts): SIGTERM (or |signal|), wait up to |timeout| seconds (10),
# then SIGKILL. Returns the exit status ($?-style), undef if not started.
sub stop {
    my ($self, %o) = @_;
    return undef unless $self->{pid};
    return $self->{exit_status} if defined $self->{exit_status};
    my $sig = $o{signal} || 'TERM';
    log_verbose("stop: $sig to $self->{pid}");
    kill $sig, $self->{pid};
    my $st = $self->wait_exit($o{timeout} || 10);
    unless (defined $st) {
        Test::More::diag("meshgate (pid $self->{pid}) did not exit after "
            . "SIG$sig, killing it");
        $self->{killed_by_harness} = 1;
        kill 'KILL', $self->{pid};
        $st = $self->wait_exit(5);
    }
    return $st;
}

# Waits for the master to exit; returns its $? or undef on timeout.
sub wait_exit {
    my ($self, $timeout) = @_;
    return undef unless $self->{pid};
    waitfor(sub { !$self->is_running }, $timeout // 10);
    return $self->{exit_status};
}

sub exit_status { $_[0]->{exit_status} }

sub _status_text {
    my ($st) = @_;
    return 'unknown' unless defined $st;
    return 'signal ' . ($st & 127) . (($st & 128) ? ' (core dumped)' : '')
        if $st & 127;
    return 'exit ' . ($st >> 8);
}

# Process helpers, all from /proc.

sub _proc_stat {
    my ($pid) = @_;
    my $s = read_file("/proc/$pid/stat");
    return unless $s =~ /^\d+ \((.*)\) (\S) (\d+)/s;
    return { comm => $1, state => $2, ppid => $3 };
}

# Children of |pid| that are not zombies.
sub children_of {
    shift if ref $_[0];
    my ($ppid) = @_;
    my @c;
    opendir my $d, '/proc' or return;
    for my $pid (grep { /^\d+$/ } readdir $d) {
        my $st = _proc_stat($pid) or next;
        push @c, $pid + 0 if $st->{ppid} == $ppid && $st->{state} ne 'Z';
    }
    @c = sort { $a <=> $b } @c;
    return @c;    # the count in scalar context
}

# The worker processes: children of the master, not zombies (their count
# in scalar context).
# Whether the binary under test was built with AddressSanitizer, whose
# shadow memory and quarantine add to every process's RSS: memory bounds
# allow for it (sanitizer_slack_kb).
sub sanitized {
    my $bin = $ENV{MESHGATE_BINARY} // return 0;
    my $out = `ldd "$bin" 2>/dev/null`;
    return $out =~ /libasan/ ? 1 : 0;
}

sub sanitizer_slack_kb { return sanitized() ? 24 * 1024 : 0 }

sub worker_pids {
    my ($self) = @_;
    return () unless $self->is_running;
    my @w = children_of($self->{pid});
    return @w;
}

# The process title (cmdline with NULs as spaces).
sub proc_title {
    shift if ref $_[0];
    my ($pid) = @_;
    my $c = read_file("/proc/$pid/cmdline");
    $c =~ s/\0+$//;
    $c =~ tr/\0/ /;
    return $c;
}

# Real/effective uid of a process, from /proc/PID/status.
sub proc_uid {
    shift if ref $_[0];
    my ($pid) = @_;
    my $s = read_file("/proc/$pid/status");
    return $s =~ /^Uid:\s+(\d+)\s+(\d+)/m ? wantarray ? ($1, $2) : $2
        : undef;
}

# TCP states in /proc/net/tcp, by their hex code.
my %TCP_STATE = ('01' => 'ESTABLISHED', '02' => 'SYN_SENT',
    '03' => 'SYN_RECV', '04' => 'FIN_WAIT1', '05' => 'FIN_WAIT2',
    '06' => 'TIME_WAIT', '07' => 'CLOSE', '08' => 'CLOSE_WAIT',
    '09' => 'LAST_ACK', '0A' => 'LISTEN', '0B' => 'CLOSING');

# "0100007F:1F90" (or the IPv6 form) -> ("127.0.0.1", 8080): each 32-bit
# word of the address is in host (little-endian) order.
sub _proc_tcp_addr {
    my ($hex) = @_;
    my ($a, $p) = split /:/, $hex;
    my @w = map { scalar reverse pack 'H8', $_ } $a =~ /(.{8})/g;
    my $ip = @w == 1 ? join('.', unpack 'C4', $w[0])
        : join(':', map { sprintf '%x', $_ } unpack 'n8', join '', @w);
    return ($ip, hex $p);
}

# tcp_sockets(PID, lport => N, rport => N, state => 'ESTABLISHED'): the
# TCP sockets process PID holds, each { local => "IP:PORT", remote =>
# ..., lport, rport, state, inode }, keeping those that match every
# option given. Its fds (/proc/PID/fd, socket:[INODE]) are matched
# against /proc/PID/net/tcp and tcp6, which show the process's own
# network namespace, so this works from outside one. Those tables are no
# snapshot: while connections come and go, a socket may be listed twice
# (kept once here) or not at all, so read twice when it matters.
sub tcp_sockets {
    shift if ref $_[0];
    my ($pid, %f) = @_;
    my (%mine, %seen);
    opendir my $d, "/proc/$pid/fd" or return;
    for my $fd (readdir $d) {
        my $l = readlink "/proc/$pid/fd/$fd" // next;
        $mine{$1} = 1 if $l =~ /^socket:\[(\d+)\]$/;
    }
    my @s;
    for my $file ("/proc/$pid/net/tcp", "/proc/$pid/net/tcp6") {
        # Large reads: each read() resumes the table walk, where the
        # listing can go wrong.
        my $text = '';
        open my $fh, '<', $file or next;
        1 while sysread($fh, $text, 1 << 20, length $text);
        for my $line (split /\n/, $text) {
            my @c = split ' ', $line;
            next unless @c > 9 && $c[0] =~ /^\d+:$/ && $mine{$c[9]}
                && !$seen{$c[9]}++;
            my ($lip, $lport) = _proc_tcp_addr($c[1]);
            my ($rip, $rport) = _proc_tcp_addr($c[2]);
            my $e = { local => "$lip:$lport", remote => "$rip:$rport",
                lport => $lport, rport => $rport,
                state => $TCP_STATE{$c[3]} // $c[3], inode => $c[9] };
            next if grep { defined $f{$_} && $e->{$_} ne $f{$_} }
                qw(lport rport state);
            push @s, $e;
        }
    }
    return @s;
}

# worker_sockets(lport => N, ...): { worker slot => [ tcp_sockets ] } for
# every proxy worker ("meshgate: worker N" in its title; the newest
# generation's when there are several), filtered as tcp_sockets does.
sub worker_sockets {
    my ($self, %f) = @_;
    my (%by, %gen);
    for my $pid ($self->worker_pids) {
        next unless proc_title($pid) =~ /worker (\d+) \(gen (\d+)\)/;
        next if defined $gen{$1} && $gen{$1} > $2;
        $gen{$1} = $2;
        $by{$1} = [ tcp_sockets($pid, %f) ];
    }
    return \%by;
}

# run_binary(@args): runs the binary in the foreground (|timeout| 10 s);
# returns { status => exit code or undef, signal, stdout, stderr }.
sub run_binary {
    my ($self, @args) = @_;
    my %o = ref $args[-1] eq 'HASH' ? %{pop @args} : ();
    my $n = ++$self->{ndaemon};
    my $out = "$self->{testdir}/cmd-$n.out";
    my $err = "$self->{testdir}/cmd-$n.err";
    log_verbose("run_binary: $self->{binary} @args");
    my $pid = fork();
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out or POSIX::_exit(127);
        open STDERR, '>', $err or POSIX::_exit(127);
        my @exec = $self->_in_netns_cmd($self->{binary}, @args);
        { no warnings q(exec); exec { $exec[0] } @exec; }
        POSIX::_exit(127);
    }
    my $st;
    waitfor(sub {
        my $r = waitpid($pid, WNOHANG);
        $st = $? if $r == $pid;
        return $r == $pid;
    }, $o{timeout} || 10);
    unless (defined $st) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
        return { status => undef, signal => 9, timed_out => 1,
            stdout => read_file($out), stderr => read_file($err) };
    }
    return { status => ($st & 127) ? undef : $st >> 8, signal => $st & 127,
        stdout => read_file($out), stderr => read_file($err) };
}

###########################################################################
# Helper daemons

# run_daemon($cmd, @args): fork/exec a helper; its output goes to
# testdir/daemon-N.log. Stopped (TERM, then KILL) at teardown.
sub run_daemon {
    my ($self, $cmd, @args) = @_;
    my $n = ++$self->{ndaemon};
    my $log = "$self->{testdir}/daemon-$n.log";
    log_verbose("run_daemon: $cmd @args");
    my $pid = fork();
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(127);
        my @exec = $self->_in_netns_cmd($cmd, @args);
        { no warnings q(exec); exec { $exec[0] } @exec; }
        print STDERR "exec $cmd: $!\n";
        POSIX::_exit(127);
    }
    push @{$self->{daemons}}, $pid;
    $self->{daemon_logs}{$pid} = $log;
    return $pid;
}

# The output file of a helper daemon (by PID).
sub daemon_log {
    my ($self, $pid) = @_;
    return read_file($self->{daemon_logs}{$pid} || return '');
}

# Stops one helper daemon (or every one) by PID.
sub stop_daemons {
    my ($self, @pids) = @_;
    @pids = @{$self->{daemons}} unless @pids;
    my %live;
    for my $pid (@pids) {
        next unless waitpid($pid, WNOHANG) == 0;
        kill 'TERM', $pid;
        $live{$pid} = 1;
    }
    waitfor(sub {
        for my $pid (keys %live) {
            delete $live{$pid} if waitpid($pid, WNOHANG) != 0;
        }
        return !%live;
    }, 5);
    for my $pid (keys %live) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }
    my %gone = map { $_ => 1 } @pids;
    $self->{daemons} = [ grep { !$gone{$_} } @{$self->{daemons}} ];
}

# run_backend(port => N, name => NAME, verbose => 1, args => [...]): starts
# t/backend/mg-backend.pl on 127.0.0.1:port(N) and waits for it. Returns
# its PID; with verbose, daemon_log(PID) shows each request it received.
sub run_backend {
    my ($self, %o) = @_;
    my $num = defined $o{port} ? $o{port} : 8081;
    my $addr = '127.0.0.1:' . port($num);
    my @args = ('--listen', $addr, '--watch-parent');
    push @args, '--name', $o{name} if defined $o{name};
    push @args, '--verbose' if $o{verbose};
    push @args, @{$o{args}} if $o{args};
    my $pid = $self->run_daemon($^X, "$TDIR/backend/mg-backend.pl", @args);
    $self->netns_do(sub { waitforsocket($addr, $o{timeout} || 10) })
        or die "backend on $addr did not start:\n"
            . read_file("$self->{testdir}/daemon-$self->{ndaemon}.log");
    return $pid;
}

sub has_nginx {
    my $ng = $ENV{TEST_MESHGATE_NGINX} || '/usr/sbin/nginx';
    return -x $ng ? $ng : undef;
}

# run_nginx($http_block): runs nginx (if installed) with the text inside
# "http { }", with %%PORT_N%% and %%TESTDIR%% substituted. Returns its PID,
# or 0 if nginx is not installed (the test should skip).
sub run_nginx {
    my ($self, $http, %o) = @_;
    my $ng = has_nginx() or return 0;
    my $d = "$self->{testdir}/nginx";
    make_path("$d/logs", "$d/tmp");
    $http = $self->_subst($http);
    my $conf = <<"EOF";
daemon off;
master_process off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log info;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $d/tmp/client_body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
$http
}
EOF
    open my $fh, '>', "$d/nginx.conf" or die "$d/nginx.conf: $!\n";
    print $fh $conf;
    close $fh;
    my $pid = $self->run_daemon($ng, '-p', "$d/", '-e', "$d/error.log",
        '-c', "$d/nginx.conf");
    while ($http =~ /\blisten\s+(127\.0\.0\.1:\d+)/g) {
        my $where = $1;
        $self->netns_do(sub { waitforsocket($where, $o{timeout} || 10) })
            or die "nginx did not listen on $where:\n"
                . read_file("$d/error.log");
    }
    return $pid;
}

###########################################################################
# Teardown

# The final check of every test: stops meshgate (if running), then one test
# that the log has no alert and no sanitizer report and that meshgate did
# not die on a signal. |allow| => qr/.../ skips matching alert lines.
sub stop_and_check {
    my ($self, %o) = @_;
    $self->{checked} = 1;
    my $st = $self->stop;
    $self->stop_daemons;

    my @bad = $self->problems(%o);
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $ok = Test::More::ok(!@bad, 'meshgate logged no alert, sanitizer '
        . 'report or worker crash and exited cleanly');
    Test::More::diag(join "\n", @bad) if @bad;
    $self->_catlog;
    return $ok;
}

sub problems {
    my ($self, %o) = @_;
    my @bad;
    my %files = map { $_ => 1 } ("$self->{testdir}/stderr.log",
        $self->error_log_path);
    for my $f (sort keys %files) {
        for my $line (split /\n/, read_file($f)) {
            next unless $line =~ /\[alert\]|AddressSanitizer|runtime error:
                |LeakSanitizer|ThreadSanitizer|MemorySanitizer/x;
            next if $o{allow} && $line =~ $o{allow}
                && $line !~ /Sanitizer|runtime error:/;
            push @bad, "$f: $line";
        }
    }
    # A worker that crashed is a failure even if the master carried on.
    for my $line (split /\n/, $self->log) {
        push @bad, "worker crash: $line"
            if $line =~ /exited on signal (4|6|7|8|11|31)\b/;
    }
    my $st = $self->{exit_status};
    push @bad, "meshgate exited on " . _status_text($st)
        if defined $st && ($st & 127);
    push @bad, "meshgate had to be killed by the harness"
        if $self->{killed_by_harness};
    return @bad;
}

sub _catlog {
    my ($self) = @_;
    return if $self->{catlogged}++;
    my $failed = !Test::More->builder->is_passing;
    return unless $ENV{TEST_MESHGATE_CATLOG} || $failed;
    my %files = map { $_ => 1 } ("$self->{testdir}/stderr.log",
        $self->error_log_path);
    for my $f (sort keys %files) {
        my $c = read_file($f);
        next if $c eq '';
        Test::More::diag("--- $f ---\n$c");
    }
}

sub _teardown {
    my ($self) = @_;
    return if $self->{owner} != $$ || $self->{torn_down}++;
    if (!$self->{checked} && $self->{auto_check}) {
        $self->stop_and_check;
    } elsif (!$self->{checked} && $self->{pid}) {
        $self->stop;
        my @bad = $self->problems;
        if (@bad) {
            Test::More::diag("teardown: $_") for @bad;
            $? = 1 unless $?;
        }
    }
    $self->stop_daemons;
    $self->_catlog if $self->{pid};
}

END {
    my $rc = $?;
    if ($$ == $owner_pid) {
        for my $t (reverse @instances) {
            local $?;
            eval { $t->_teardown };
            Test::More::diag("teardown: $@") if $@;
        }
        # Everything that listened on our ports is stopped: free them.
        for my $l (@port_locks) {
            unlink $l->[0];
            close $l->[1];
        }
    }
    $? = $rc;
}

###########################################################################
# Waiting

# waitfor(sub { ... }, $timeout): polls the sub every 20 ms until it returns
# true (that value is returned) or |timeout| seconds (10) pass (returns 0).
sub waitfor {
    my ($code, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (1) {
        my $r = $code->();
        return $r if $r;
        return 0 if time > $deadline;
        sleep 0.02;
    }
}

sub _try_connect {
    my ($addr) = @_;
    my ($h, $p) = split /:/, $addr;
    my $s = IO::Socket::INET->new(PeerAddr => $h, PeerPort => $p,
        Proto => 'tcp', Timeout => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

# waitforsocket("127.0.0.1:PORT", $timeout): 1 once it accepts TCP
# connections, 0 after |timeout| seconds (10).
sub waitforsocket {
    my ($addr, $timeout) = @_;
    return waitfor(sub { _try_connect($addr) }, $timeout // 10) ? 1 : 0;
}

###########################################################################
# HTTP client

our $ERROR = '';   # why the last http() returned undef

sub _connect {
    my (%o) = @_;
    my $port = defined $o{port} ? $o{port} : port(8000);
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
        Proto => 'tcp', Timeout => $o{timeout} || 5);
    unless ($s) {
        $ERROR = "connect 127.0.0.1:$port: $!";
        return undef;
    }
    $s->autoflush(1);
    $s->blocking(0);
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    return $s;
}

sub _write_all {
    my ($s, $data, $timeout) = @_;
    my $deadline = time + ($timeout || 5);
    my $sel = IO::Select->new($s);
    my $off = 0;
    while ($off < length $data) {
        my $left = $deadline - time;
        if ($left <= 0) { $ERROR = 'write timeout'; return 0 }
        next unless $sel->can_write($left);
        my $n = syswrite($s, $data, 65536, $off);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            $ERROR = "write: $!";
            return 0;
        }
        $off += $n;
    }
    return 1;
}

# Reads from |s| into |$$buf| until EOF, timeout, or (with |one|) one full
# response. Returns 'eof', 'complete', 'timeout' or 'error'.
sub _read_into {
    my ($s, $buf, %o) = @_;
    my $deadline = time + ($o{timeout} || 5);
    my $sel = IO::Select->new($s);
    while (1) {
        if ($o{one} && length $$buf) {
            my $r = parse_response($$buf, head => $o{head}, eof => 0);
            return 'complete' if $r->{complete} || $r->{bad};
        }
        my $left = $deadline - time;
        return 'timeout' if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread($s, $$buf, 65536, length $$buf);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            $ERROR = "read: $!";
            return 'error';
        }
        return 'eof' if $n == 0;
    }
}

# http($raw, %opts): sends raw bytes to 127.0.0.1 and returns the raw reply.
#   port => P      destination port (default port(8000))
#   socket => $s   reuse a socket (from start => 1)
#   start => 1     only connect and send; returns the socket
#   keep => 1      read one complete response and keep the socket open
#   head => 1      the request is HEAD (no body in the response)
#   timeout => s   read/write timeout (5)
# Returns undef if the connection fails ($Test::Meshgate::ERROR says why);
# otherwise what was read until EOF/timeout (possibly '').
sub http {
    my ($request, %o) = @_;
    my $s = $o{socket} || _connect(%o) or return undef;
    if (defined $request && length $request) {
        _write_all($s, $request, $o{timeout}) or do {
            Test::More::diag("http: $ERROR") unless $o{quiet};
            return undef;
        };
    }
    return $s if $o{start};
    my $buf = '';
    my $how = _read_into($s, \$buf, %o, one => $o{keep});
    log_verbose("http: read ", length $buf, " bytes ($how)");
    if ($how eq 'timeout' && !$o{keep} && !$o{quiet}) {
        Test::More::diag("http: timeout after reading " . length($buf)
            . " bytes");
    }
    close $s unless $o{keep};
    return $buf;
}

# http_get($path, host => H, port => P, headers => [ 'X-A: b', ... ],
# method => M, version => '1.1', keep => 1, ...): a GET (by default with
# "Connection: close" unless keep) and the raw reply.
sub http_get {
    my ($path, %o) = @_;
    my $m = $o{method} || 'GET';
    my $v = $o{version} || '1.1';
    my $req = "$m $path HTTP/$v\r\n";
    $req .= 'Host: ' . (defined $o{host} ? $o{host} : 'localhost') . "\r\n"
        unless defined $o{host} && $o{host} eq '';
    $req .= "$_\r\n" for @{$o{headers} || []};
    $req .= "Connection: close\r\n" unless $o{keep} || $v eq '1.0';
    $req .= "\r\n";
    return http($req, %o, head => $m eq 'HEAD');
}

# parse_response($raw, head => 1, eof => 1): splits a raw response into
#   { status, version, reason, headers => { lc name => value (repeats
#     joined with ", ") }, header_lines => [ [name, value], ... ], body
#     (de-chunked), complete (1 if the framing was satisfied), length
#     (bytes of |raw| used), rest (bytes after it), chunked, interim =>
#     [ 1xx responses skipped ] }.
# Returns { bad => 1, ... } if the status line is invalid; a response
# without the end of its head has complete => 0. Without eof => 1 a
# close-delimited body is not complete.
sub parse_response {
    my ($raw, %o) = @_;
    my $eof = exists $o{eof} ? $o{eof} : 1;
    my $off = 0;
    my @interim;
    my %r;
    while (1) {
        %r = (complete => 0, headers => {}, header_lines => [], body => '',
            rest => '', length => 0, interim => \@interim);
        return \%r unless defined $raw;
        my $end = index($raw, "\r\n\r\n", $off);
        my $sep = 4;
        if ($end < 0) {
            $end = index($raw, "\n\n", $off);
            $sep = 2;
        }
        if ($end < 0) {
            $r{bad} = 1 if length($raw) > $off
                && substr($raw, $off, 5) !~ /^(?:H(?:T(?:T(?:P(?:\/)?)?)?)?)$/;
            return \%r;
        }
        my $head = substr($raw, $off, $end - $off);
        my @lines = split /\r?\n/, $head;
        my $sl = shift @lines;
        unless ($sl =~ m{^(HTTP/\d\.\d) (\d{3})(?: (.*))?$}) {
            $r{bad} = 1;
            $r{status_line} = $sl;
            return \%r;
        }
        @r{qw(version status reason)} = ($1, $2, defined $3 ? $3 : '');
        $r{status_line} = $sl;
        for my $l (@lines) {
            my ($n, $v) = $l =~ /^([^:]+):[ \t]*(.*?)[ \t]*$/ or next;
            push @{$r{header_lines}}, [$n, $v];
            my $k = lc $n;
            $r{headers}{$k} = exists $r{headers}{$k}
                ? "$r{headers}{$k}, $v" : $v;
        }
        $r{head} = $head;
        my $bstart = $end + $sep;
        if ($r{status} =~ /^1/ && $r{status} != 101) {
            push @interim, { status => $r{status},
                headers => $r{headers} };
            $off = $bstart;
            next;
        }
        my $h = $r{headers};
        if ($o{head} || $r{status} =~ /^(?:1|204|304)/) {
            if ($r{status} == 101) {
                $r{body} = substr($raw, $bstart);
                $r{length} = length $raw;
            } else {
                $r{length} = $bstart;
                $r{rest} = substr($raw, $bstart);
            }
            $r{complete} = 1;
        } elsif (($h->{'transfer-encoding'} || '') =~ /chunked/i) {
            $r{chunked} = 1;
            my $p = $bstart;
            my $body = '';
            while (1) {
                my $le = index($raw, "\n", $p);
                last if $le < 0;
                my $sz = substr($raw, $p, $le - $p);
                unless ($sz =~ /^([0-9a-fA-F]+)[^\r\n]*\r?$/) {
                    $r{bad_chunk} = 1;
                    last;
                }
                my $n = hex $1;
                $p = $le + 1;
                if ($n == 0) {
                    # trailers up to an empty line
                    while (1) {
                        my $te = index($raw, "\n", $p);
                        last if $te < 0;
                        my $tl = substr($raw, $p, $te - $p);
                        $p = $te + 1;
                        if ($tl =~ /^\r?$/) {
                            $r{complete} = 1;
                            last;
                        }
                        push @{$r{trailers}}, $tl;
                    }
                    last;
                }
                last if length($raw) < $p + $n + 2;
                $body .= substr($raw, $p, $n);
                $p += $n;
                $p += substr($raw, $p, 2) eq "\r\n" ? 2 : 1;
            }
            $r{body} = $body;
            $r{length} = $r{complete} ? $p : length $raw;
            $r{rest} = substr($raw, $p) if $r{complete};
        } elsif (defined $h->{'content-length'}
            && $h->{'content-length'} =~ /^\s*(\d+)\s*$/)
        {
            my $cl = $1;
            $r{body} = substr($raw, $bstart, $cl);
            if (length($raw) >= $bstart + $cl) {
                $r{complete} = 1;
                $r{length} = $bstart + $cl;
                $r{rest} = substr($raw, $bstart + $cl);
            } else {
                $r{length} = length $raw;
            }
        } else {
            $r{close_delimited} = 1;
            $r{body} = substr($raw, $bstart);
            $r{length} = length $raw;
            $r{complete} = $eof ? 1 : 0;
        }
        return \%r;
    }
}

# pattern_bytes($n): the body mg-backend.pl sends for /bytes/N,
# /chunked/N and /close/N: byte i is chr(ord('a') + i % 26).
sub pattern_bytes {
    my ($n) = @_;
    my $unit = join '', 'a' .. 'z';
    my $s = $unit x (int($n / 26) + 1);
    return substr($s, 0, $n);
}

###########################################################################
# A keep-alive client: one socket, one response read at a time.
#
#   my $c = Test::Meshgate::Client->new(port => port(8000));
#   my $r = $c->get('/echo', host => 'a.test');    # parsed response or undef
#   $c->is_open;             # 1 unless the server closed the connection
#   $c->wait_closed(3);      # 1 once the server closes it (within 3 s)

package Test::Meshgate::Client;

use Errno qw(EINTR EAGAIN EWOULDBLOCK ECONNRESET);
use IO::Select;
use Socket qw(MSG_PEEK MSG_DONTWAIT);
use Time::HiRes qw(time sleep);

sub new {
    my ($class, %o) = @_;
    my $s = Test::Meshgate::_connect(%o) or return undef;
    return bless { s => $s, buf => '', timeout => $o{timeout} || 5,
        port => $o{port}, error => '', requests => 0, eof => 0 }, $class;
}

sub socket { $_[0]->{s} }
sub error { $_[0]->{error} }
sub requests { $_[0]->{requests} }

sub send {
    my ($self, $data) = @_;
    return 0 unless $self->{s};
    unless (Test::Meshgate::_write_all($self->{s}, $data, $self->{timeout})) {
        $self->{error} = $Test::Meshgate::ERROR;
        return 0;
    }
    return 1;
}

# Reads one response; returns the parsed response (with raw => text) or
# undef with $c->error set ('eof', 'timeout', 'bad response', 'read: ...').
sub read_response {
    my ($self, %o) = @_;
    my $timeout = $o{timeout} || $self->{timeout};
    my $deadline = time + $timeout;
    my $sel = IO::Select->new($self->{s});
    while (1) {
        if (length $self->{buf}) {
            my $r = Test::Meshgate::parse_response($self->{buf},
                head => $o{head}, eof => $self->{eof});
            if ($r->{bad}) {
                $self->{error} = 'bad response';
                return undef;
            }
            if ($r->{complete}) {
                $r->{raw} = substr($self->{buf}, 0, $r->{length});
                $self->{buf} = substr($self->{buf}, $r->{length});
                $self->{requests}++;
                return $r;
            }
        }
        if ($self->{eof}) {
            $self->{error} = length $self->{buf} ? 'eof in response' : 'eof';
            return undef;
        }
        my $left = $deadline - time;
        if ($left <= 0) {
            $self->{error} = 'timeout';
            return undef;
        }
        next unless $sel->can_read($left);
        my $n = sysread($self->{s}, $self->{buf}, 65536,
            length $self->{buf});
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            $self->{error} = "read: $!";
            $self->{eof} = 1;
            return undef;
        }
        $self->{eof} = 1 if $n == 0;
    }
}

# request($raw, head => 1): send and read one response.
sub request {
    my ($self, $raw, %o) = @_;
    $self->send($raw) or return undef;
    return $self->read_response(%o);
}

# get($path, host => H, headers => [...], method => M, close => 1)
sub get {
    my ($self, $path, %o) = @_;
    my $m = $o{method} || 'GET';
    my $req = "$m $path HTTP/1.1\r\nHost: "
        . (defined $o{host} ? $o{host} : 'localhost') . "\r\n";
    $req .= "$_\r\n" for @{$o{headers} || []};
    $req .= "Connection: close\r\n" if $o{close};
    $req .= "\r\n";
    return $self->request($req, %o, head => $m eq 'HEAD');
}

# 1 unless the server has closed (or reset) the connection. Data the
# server sent meanwhile stays buffered for read_response.
sub is_open {
    my ($self) = @_;
    return 0 if $self->{eof} || !$self->{s};
    my $sel = IO::Select->new($self->{s});
    while ($sel->can_read(0)) {
        my $n = sysread($self->{s}, $self->{buf}, 65536, length $self->{buf});
        if (!defined $n) {
            next if $! == EINTR;
            last if $! == EAGAIN || $! == EWOULDBLOCK;
            $self->{eof} = 1;
            return 0;
        }
        if ($n == 0) {
            $self->{eof} = 1;
            return 0;
        }
    }
    return 1;
}

# wait_closed($timeout): 1 once the server closed the connection.
sub wait_closed {
    my ($self, $timeout) = @_;
    return Test::Meshgate::waitfor(sub { !$self->is_open }, $timeout // 5)
        ? 1 : 0;
}

sub close {
    my ($self) = @_;
    CORE::close($self->{s}) if $self->{s};
    $self->{s} = undef;
}

###########################################################################
# HTTP/2 upstreams and test certificates (methods of Test::Meshgate).
#
#   plan(skip_all => 'no python3-h2') unless Test::Meshgate::h2_python();
#   my $pid = $t->run_h2_backend(port => 8081, h2c => 1, max_streams => 2);
#   my @ev = $t->h2_events(8081, ev => 'stream');    # its JSON log lines
#   $t->make_ca('ca');
#   $t->make_cert('srv', cn => 'h2.test', san => 'DNS:h2.test', ca => 'ca');

package Test::Meshgate;

use JSON::PP ();

# The python3 that has the h2 package (TEST_MESHGATE_PYTHON, else
# /usr/bin/python3), or undef.
sub h2_python {
    my $py = $ENV{TEST_MESHGATE_PYTHON} || '/usr/bin/python3';
    return undef unless -x $py;
    return system($py, '-c', 'import h2.connection, hpack') == 0 ? $py
        : undef;
}

# run_h2_backend(port => N, h2c => 1 | tls_cert => F, tls_key => F,
# client_ca => F, alpn => 'h2', max_streams => N, goaway_after => N,
# no_ping_ack => 1, name => NAME, args => [...]): starts
# t/backend/h2-backend.py on 127.0.0.1:port(N), logging its events to
# testdir/h2-backend-N.json, and waits for its "listening" line (not for a
# TCP connect, which a TLS backend would log as a failed handshake).
# Relative certificate paths are in the test dir. Returns its PID.
sub run_h2_backend {
    my ($self, %o) = @_;
    my $num = defined $o{port} ? $o{port} : 8081;
    my $py = h2_python() or die "no python3 with the h2 package\n";
    my $dir = $self->{testdir};
    my $path = sub { $_[0] =~ m{^/} ? $_[0] : "$dir/$_[0]" };
    my $log = $self->h2_backend_log($num);
    my @args = ('--port', port($num), '--log', $log, '--watch-parent',
        '--name', $o{name} // "h2-$num");
    push @args, '--h2c' if $o{h2c};
    push @args, '--tls-cert', $path->($o{tls_cert}), '--tls-key',
        $path->($o{tls_key}) if $o{tls_cert};
    push @args, '--client-ca', $path->($o{client_ca}) if $o{client_ca};
    push @args, '--alpn', $o{alpn} if defined $o{alpn};
    push @args, '--max-streams', $o{max_streams} if $o{max_streams};
    push @args, '--goaway-after', $o{goaway_after} if $o{goaway_after};
    push @args, '--no-ping-ack' if $o{no_ping_ack};
    push @args, @{$o{args}} if $o{args};
    my $pid = $self->run_daemon($py, "$TDIR/backend/h2-backend.py", @args);
    my $up = waitfor(sub {
        return 1 if $self->daemon_log($pid) =~ /^listening \d+/m;
        return -1 if waitpid($pid, WNOHANG) == $pid;
        return 0;
    }, $o{timeout} || 10);
    die "h2-backend on port $num did not start:\n" . $self->daemon_log($pid)
        unless $up && $up == 1;
    return $pid;
}

# The event log file of the h2 backend on port(N).
sub h2_backend_log {
    my ($self, $num) = @_;
    return "$self->{testdir}/h2-backend-$num.json";
}

# h2_events(N, KEY => VALUE, ...): the events the h2 backend on port(N)
# logged so far, decoded, keeping those whose KEY equals VALUE (a Regexp
# VALUE must match instead; KEY "path" is the :path of a stream's
# request).
sub h2_events {
    my ($self, $num, %f) = @_;
    my @ev;
    for my $line (split /\n/, read_file($self->h2_backend_log($num))) {
        my $e = eval { JSON::PP::decode_json($line) } or next;
        if ($e->{headers}) {
            for my $h (@{$e->{headers}}) {
                $e->{path} //= $h->[1] if $h->[0] eq ':path';
            }
        }
        my $keep = 1;
        for my $k (keys %f) {
            my $v = $e->{$k};
            $keep = 0, last unless defined $v
                && (ref $f{$k} eq 'Regexp' ? $v =~ $f{$k} : $v eq $f{$k});
        }
        push @ev, $e if $keep;
    }
    return @ev;
}

sub _openssl {
    my ($self, $args) = @_;
    my $d = $self->{testdir};
    system("openssl $args >>$d/openssl.log 2>&1") == 0
        or die "openssl $args failed:\n" . read_file("$d/openssl.log");
}

# make_ca(NAME, cn => CN): a self-signed P-256 CA, NAME.crt and NAME.key in
# the test dir.
sub make_ca {
    my ($self, $name, %o) = @_;
    my $d = $self->{testdir};
    my $cn = $o{cn} // "test $name";
    $self->_openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256"
        . " -nodes -subj '/CN=$cn' -days 2 -keyout $d/$name.key"
        . " -out $d/$name.crt");
    return "$d/$name.crt";
}

# make_cert(NAME, cn => CN, san => 'DNS:a,DNS:b', ca => CANAME): a P-256
# certificate signed by the CA CANAME (default "ca"), NAME.crt and NAME.key
# in the test dir.
sub make_cert {
    my ($self, $name, %o) = @_;
    my $d = $self->{testdir};
    my $ca = $o{ca} // 'ca';
    my $ext = $o{san} ? " -addext 'subjectAltName=$o{san}'" : '';
    $self->_openssl("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
        . " -subj '/CN=$o{cn}'$ext -keyout $d/$name.key -out $d/$name.csr");
    $self->_openssl("x509 -req -in $d/$name.csr -CA $d/$ca.crt"
        . " -CAkey $d/$ca.key -CAcreateserial -days 2 -copy_extensions copy"
        . " -out $d/$name.crt");
    return "$d/$name.crt";
}

1;
