#!/usr/bin/perl

# mg-flaky.pl: an HTTP/1.1 test backend whose behaviour is chosen per
# backend by the query string, so that several backends behind one cluster
# answer the same request differently. Core modules only.
#
#   mg-flaky.pl --listen 127.0.0.1:PORT --name NAME [--watch-parent]
#
# A request's query holds NAME=ACTION pairs; this backend does what its
# own NAME says (no pair: "200"):
#   NNN               that status, body "NAME NNN\n"
#   delay-MS          wait MS milliseconds, then 200
#   delay-MS-NNN      wait MS milliseconds, then status NNN
#   drop              read the request, close without answering
#   reset             read the request, reset the connection (RST)
#   kaclose-MS        200 as keep-alive, then close the connection MS
#                     milliseconds later without reading anything more
# The whole request body is read before anything is done.
#
# Every request is logged to stderr, one line each, when its head and body
# have been read and before it is answered:
#   req NAME PID TIME METHOD TARGET body=N
# so a test counts a backend's requests in its log. Connections are kept
# alive (one forked process each) unless the request says otherwise.

use strict;
use warnings;

use Errno qw(EINTR EAGAIN EWOULDBLOCK);
use Getopt::Long qw(GetOptions);
use IO::Select;
use IO::Socket::INET;
use POSIX qw(:sys_wait_h :signal_h);
use Socket qw(SOL_SOCKET SO_LINGER SOMAXCONN IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);

my ($listen, $name, $watch_parent);
GetOptions('listen=s' => \$listen, 'name=s' => \$name,
    'watch-parent' => \$watch_parent)
    or die "usage: $0 --listen HOST:PORT --name NAME [--watch-parent]\n";
die "usage: $0 --listen HOST:PORT --name NAME [--watch-parent]\n"
    unless defined $listen && $listen =~ /^(.+):(\d+)$/ && defined $name;
my ($laddr, $lport) = ($1, $2);
my $ppid = getppid();

my $srv = IO::Socket::INET->new(LocalAddr => $laddr, LocalPort => $lport,
    Listen => SOMAXCONN > 1024 ? SOMAXCONN : 1024, ReuseAddr => 1,
    Proto => 'tcp') or die "mg-flaky: listen $listen: $!\n";

my $parent = $$;
my %kids;
my $chld = POSIX::SigSet->new(SIGCHLD);
$SIG{PIPE} = 'IGNORE';
$SIG{CHLD} = sub {
    while ((my $p = waitpid(-1, WNOHANG)) > 0) { delete $kids{$p} }
};
$SIG{TERM} = $SIG{INT} = sub {
    kill 'TERM', keys %kids;
    exit 0;
};

my %REASON = (200 => 'OK', 409 => 'Conflict', 410 => 'Gone',
    500 => 'Internal Server Error', 502 => 'Bad Gateway',
    503 => 'Service Unavailable', 504 => 'Gateway Timeout');

my $lsel = IO::Select->new($srv);
while (1) {
    if ($watch_parent && getppid() != $ppid) {
        kill 'TERM', keys %kids;
        exit 0;
    }
    next unless $lsel->can_read(0.5);
    my $c = $srv->accept or next;
    sigprocmask(SIG_BLOCK, $chld);
    my $pid = fork();
    if (!defined $pid) {
        sigprocmask(SIG_UNBLOCK, $chld);
        close $c;
        next;
    }
    if ($pid == 0) {
        $SIG{TERM} = $SIG{INT} = $SIG{CHLD} = 'DEFAULT';
        sigprocmask(SIG_UNBLOCK, $chld);
        close $srv;
        serve($c);
        POSIX::_exit(0);
    }
    $kids{$pid} = 1;
    sigprocmask(SIG_UNBLOCK, $chld);
    close $c;
}

my ($c, $buf);

sub fill {
    my $sel = IO::Select->new($c);
    my $deadline = time + 120;
    while (time < $deadline) {
        POSIX::_exit(0) if getppid() != $parent;
        next unless $sel->can_read(1);
        my $n = sysread($c, $buf, 65536, length $buf);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            return 0;
        }
        return $n > 0 ? 1 : 0;
    }
    return 0;
}

sub out {
    my ($data) = @_;
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($c, $data, length($data) - $off, $off);
        if (!defined $n) {
            next if $! == EINTR;
            POSIX::_exit(0);
        }
        $off += $n;
    }
}

sub read_line {
    my $i;
    while (($i = index($buf, "\n")) < 0) {
        return undef if length $buf > 65536 || !fill();
    }
    my $l = substr($buf, 0, $i + 1);
    $buf = substr($buf, $i + 1);
    return $l;
}

sub take {
    my ($n) = @_;
    while ($n > 0) {
        return 0 unless length $buf || fill();
        my $k = $n < length $buf ? $n : length $buf;
        $buf = substr($buf, $k);
        $n -= $k;
    }
    return 1;
}

# Reads and drops the body; its length, or undef.
sub read_body {
    my ($h) = @_;
    my $total = 0;
    if (($h->{'transfer-encoding'} || '') =~ /chunked/i) {
        while (1) {
            my $l = read_line();
            return undef unless defined $l && $l =~ /^([0-9a-fA-F]+)/;
            my $n = hex $1;
            if ($n == 0) {
                while (1) {
                    my $t = read_line();
                    return undef unless defined $t;
                    return $total if $t =~ /^\r?\n$/;
                }
            }
            take($n) or return undef;
            $total += $n;
            my $crlf = read_line();
            return undef unless defined $crlf;
        }
    }
    my $n = $h->{'content-length'} // 0;
    return undef unless $n =~ /^\s*(\d+)\s*$/;
    take($1) or return undef;
    return $1 + 0;
}

sub serve {
    ($c) = @_;
    $buf = '';
    setsockopt($c, IPPROTO_TCP, TCP_NODELAY, 1);
    while (1) {
        my $end;
        while (1) {
            $buf =~ s/^(?:\r?\n)+//;
            last if ($end = index($buf, "\r\n\r\n")) >= 0;
            return if length $buf > 1024 * 1024;
            return unless fill();
        }
        my $head = substr($buf, 0, $end + 4);
        $buf = substr($buf, $end + 4);
        my @lines = split /\r\n/, $head;
        my ($method, $target, $version) =
            shift(@lines) =~ m{^(\S+) (\S+) HTTP/(\d\.\d)$} or return;
        my %h;
        for my $l (@lines) {
            my ($k, $v) = $l =~ /^([^:]+):[ \t]*(.*?)[ \t]*$/ or next;
            $h{lc $k} = $v;
        }
        my $blen = read_body(\%h);
        return unless defined $blen;
        my $keep = $version eq '1.1'
            && lc($h{connection} || '') !~ /\bclose\b/;

        my $action = '200';
        if ($target =~ /\?(.*)$/) {
            for my $kv (split /&/, $1) {
                my ($k, $v) = split /=/, $kv, 2;
                $action = $v if defined $v && $k eq $name;
            }
        }
        my $line = sprintf("req %s %d %.3f %s %s body=%d\n", $name, $$, time,
            $method, $target, $blen);
        syswrite(STDERR, $line);

        my $status = 200;
        my $close_after;
        if ($action eq 'drop') {
            return;
        } elsif ($action eq 'reset') {
            setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
            close $c;
            return;
        } elsif ($action =~ /^delay-(\d+)(?:-(\d{3}))?$/) {
            sleep($1 / 1000);
            $status = $2 // 200;
        } elsif ($action =~ /^(\d{3})$/) {
            $status = $1;
        } elsif ($action =~ /^kaclose-(\d+)$/) {
            $close_after = $1 / 1000;
        }
        my $body = "$name $status\n";
        out("HTTP/1.1 $status " . ($REASON{$status} || 'Status') . "\r\n"
            . "X-Backend: $name\r\nContent-Type: text/plain\r\n"
            . 'Content-Length: ' . length($body) . "\r\n"
            . ($keep ? '' : "Connection: close\r\n") . "\r\n"
            . ($method eq 'HEAD' ? '' : $body));
        if (defined $close_after) {
            sleep $close_after;
            return;
        }
        return unless $keep;
    }
}
