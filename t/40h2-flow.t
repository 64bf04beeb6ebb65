#!/usr/bin/perl

# HTTP/2 flow control tied to upstream back-pressure: a client that keeps
# its window shut, or that stops reading its socket, on a 200 MiB response
# makes the worker stop reading the upstream (the backend stops writing),
# and the worker's memory stays small; then the whole body arrives intact.
# A fast 200 MiB upload keeps the worker small too.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Digest::SHA;
use POSIX ();
use Test::More;
use Time::HiRes qw(time);
use Test::Meshgate;

my $py = (grep { system("$_ -c 'import h2' >/dev/null 2>&1") == 0 }
    '/usr/bin/python3', 'python3')[0];
plan(skip_all => 'no python3 with the h2 package (python3-h2)') unless $py;
plan(skip_all => 'curl is not installed')
    unless grep { -x "$_/curl" } split /:/, $ENV{PATH};
my $h2raw = "$FindBin::Bin/lib/h2raw.py";

my $t = Test::Meshgate->new;

$t->run_backend(port => 8081, name => 'b1');
$t->write_conf(<<'EOF');
gateway = { workers = 1; drain_timeout = 1.0; log_level = "info"; };
listeners = ( { name = "h2c"; listen = "127.0.0.1:%%PORT_8000%%"; h2c = true;
                routes = "mesh"; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/"; cluster = "backend"; } ); };
clusters = ( { name = "backend"; response_timeout = 60.0;
               endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); } );
EOF
$t->run;
my $port = port(8000);
my $dir = $t->testdir;
my $big = 200 * 1024 * 1024;
my $limit_kb = 32 * 1024;

sub worker_kb {
    my ($field) = @_;
    my $max = 0;
    for my $pid ($t->worker_pids) {
        my $s = read_file("/proc/$pid/status");
        $max = $1 if $s =~ /^$field:\s+(\d+) kB/m && $1 > $max;
    }
    return $max;
}

# Bytes a process has written or read (all its fds), from /proc/PID/io.
sub wchar {
    my ($pid) = @_;
    return read_file("/proc/$pid/io") =~ /^wchar:\s+(\d+)/m ? $1 : undef;
}

sub worker_rchar {
    my $n = 0;
    for my $pid ($t->worker_pids) {
        $n += $1 if read_file("/proc/$pid/io") =~ /^rchar:\s+(\d+)/m;
    }
    return $n;
}

# slow_reader($mode): runs h2raw.py slowread in the background, waits for
# it to stall, checks the backend and the worker, then lets it finish.
sub slow_reader {
    my ($what, $stall_socket) = @_;
    my $go = "$dir/go-$stall_socket";
    unlink $go;
    my $read0 = worker_rchar();
    my $pid = $t->run_daemon($py, $h2raw, 'slowread', $port, "/bytes/$big",
        $go, $stall_socket);
    my $line = '';
    waitfor(sub {
        ($line) = $t->daemon_log($pid) =~ /^(stalled .*)$/m;
        return $line;
    }, 20);
    my ($got) = ($line // '') =~ /received=(\d+)/;
    my ($bpid) = ($line // '') =~ /backend_pid=(\d+)/;
    ok(defined $got && $got < $big, "$what: the client has stopped taking "
        . 'the body') or diag($t->daemon_log($pid));
    if ($stall_socket) {
        cmp_ok($got // 0, '>', 0, "$what: after the first bytes");
    } else {
        cmp_ok($got // 0, '<=', 65535,
            "$what: no more than the initial window arrived");
    }

    # The backend stops writing once the buffers on the way are full.
    my ($w1, $w2) = (0, -1);
    ok($bpid && waitfor(sub {
        $w1 = wchar($bpid) // return 0;
        select(undef, undef, undef, 0.5);
        $w2 = wchar($bpid) // return 0;
        return $w1 == $w2;
    }, 20), "$what: the backend is no longer read (it stops writing)")
        or diag("backend pid " . ($bpid // '-') . ", wrote $w1 then $w2");
    my $read = worker_rchar() - $read0;
    cmp_ok($read, '<', 32 * 1024 * 1024,
        "$what: the worker has read well under the 200 MiB");
    note("$what: the worker read $read bytes meanwhile");
    my $rss = worker_kb('VmRSS');
    cmp_ok($rss, '<', $limit_kb, "$what: the worker holds under 32 MiB")
        or diag("VmRSS $rss kB");

    open my $fh, '>', $go or die;
    close $fh;
    my $res = '';
    waitfor(sub {
        ($res) = $t->daemon_log($pid) =~ /^(result .*)$/m;
        return $res;
    }, 60);
    like($res // '', qr/received=$big pattern_ok=1 status=200/,
        "$what: then all 200 MiB arrive intact") or diag($t->daemon_log($pid));
    $t->stop_daemons($pid);
}

slow_reader('a window kept shut', 0);
slow_reader('a socket left unread', 1);

# Both directions at full speed.
{
    my $f = "$dir/up.bin";
    system("head -c $big /dev/urandom > $f") == 0 or die "cannot write $f\n";
    my $sha = Digest::SHA->new(1)->addfile($f)->hexdigest;
    my $start = time;
    my $out = `timeout 120 curl -sS --http2-prior-knowledge --max-time 100 -T $f -X POST http://127.0.0.1:$port/upload 2>&1`;
    is($out, "bytes=$big sha1=$sha", 'a 200 MiB upload with content-length '
        . 'arrives intact');
    note(sprintf 'upload took %.1f s', time - $start);
    $out = `timeout 120 sh -c 'curl -sS --http2-prior-knowledge --max-time 100 -T - -X POST http://127.0.0.1:$port/upload < $f' 2>&1`;
    is($out, "bytes=$big sha1=$sha",
        'a 200 MiB upload without content-length arrives intact');
    unlink $f;

    $out = `timeout 120 curl -sS --http2-prior-knowledge --max-time 100 -o /dev/null -w '%{http_code} %{size_download}' http://127.0.0.1:$port/bytes/$big 2>&1`;
    is($out, "200 $big", 'a 200 MiB download at full speed');
}

my $hwm = worker_kb('VmHWM');
cmp_ok($hwm, '<', $limit_kb, 'the worker never went above 32 MiB (VmHWM)')
    or diag("VmHWM $hwm kB");
note("worker VmHWM $hwm kB");

$t->stop_and_check;
done_testing();
