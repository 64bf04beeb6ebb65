#!/usr/bin/perl

# mg-backend.pl: an HTTP/1.1 test backend for the meshgate tests, with
# paths that misbehave on purpose. Core modules only.
#
#   mg-backend.pl --listen 127.0.0.1:PORT|[::1]:PORT [--name NAME] [--verbose]
#                 [--idle-timeout SECONDS] [--watch-parent]
#
# --watch-parent: exit (with every connection process) once the process
# that started the backend is gone.
#
# One process per connection (forked), keep-alive and pipelining for
# HTTP/1.1 by default. Every response carries
#   X-Backend: NAME (default: the port)
#   X-Backend-Pid: the PID serving the connection (one per connection)
#   X-Backend-Request: the number of this request on the connection
#
# Paths (a query string is ignored):
#   /echo              200, body = the request head as received + the body
#   /status/NNN        that status (body "NNN\n" where a body is allowed)
#   /delay/MS          200 after MS milliseconds
#   /bytes/N           N bytes with Content-Length
#   /chunked/N         N bytes chunked, in several chunks
#   /close/N           N bytes delimited by close (Connection: close)
#   /drop              reads the request, closes without answering
#   /reset             reads the request, resets the connection (RST)
#   /garbage           an invalid status line, then close
#   /upload            reads the whole body; "bytes=N sha1=HEX"
#   /ws                101 for "Upgrade: websocket", then echoes bytes
#   /keepalive-close   answers as keep-alive, then closes at once
#   /keepalive-close/MS  the same, closing MS milliseconds later
#   /head-check        200 with a body; HEAD gets the headers only
#   anything else      200, body "NAME METHOD PATH\n"
# Bodies of /bytes, /chunked and /close: byte i is chr(ord('a') + i % 26).
# HEAD never gets a body. Large bodies stream in 64 KiB blocks.

use strict;
use warnings;

use Digest::SHA qw(sha1_base64);
use Errno qw(EINTR EAGAIN EWOULDBLOCK);
use Getopt::Long qw(GetOptions);
use IO::Select;
use IO::Socket::INET;
use POSIX qw(:sys_wait_h :signal_h);
use Socket qw(SOL_SOCKET SO_LINGER SOMAXCONN IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);

my ($listen, $name, $verbose, $watch_parent);
my $idle_timeout = 120;
GetOptions('listen=s' => \$listen, 'name=s' => \$name,
    'verbose' => \$verbose, 'idle-timeout=f' => \$idle_timeout,
    'watch-parent' => \$watch_parent)
    or usage();
my $ppid = getppid();
usage() unless defined $listen && $listen =~ /^(.+):(\d+)$/;
my ($laddr, $lport) = ($1, $2);
$name = $lport unless defined $name;

sub usage {
    print STDERR "usage: $0 --listen HOST:PORT [--name NAME] [--verbose]"
        . " [--idle-timeout S] [--watch-parent]\n";
    exit 2;
}

# "[::1]:PORT" listens on IPv6 (IO::Socket::INET is IPv4 only).
my $class = 'IO::Socket::INET';
if ($laddr =~ s/^\[(.*)\]$/$1/) {
    require IO::Socket::IP;
    $class = 'IO::Socket::IP';
}
my $srv = $class->new(LocalAddr => $laddr, LocalPort => $lport,
    Listen => SOMAXCONN > 1024 ? SOMAXCONN : 1024, ReuseAddr => 1,
    Proto => 'tcp') or die "mg-backend: listen $listen: $!\n";

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

print STDERR "mg-backend $name listening on $listen (pid $$)\n" if $verbose;

my %REASON = (100 => 'Continue', 101 => 'Switching Protocols', 200 => 'OK',
    201 => 'Created', 204 => 'No Content', 301 => 'Moved Permanently',
    302 => 'Found', 304 => 'Not Modified', 400 => 'Bad Request',
    401 => 'Unauthorized', 403 => 'Forbidden', 404 => 'Not Found',
    408 => 'Request Timeout', 413 => 'Payload Too Large',
    429 => 'Too Many Requests', 500 => 'Internal Server Error',
    502 => 'Bad Gateway', 503 => 'Service Unavailable',
    504 => 'Gateway Timeout');

# A block of the body pattern whose length is a multiple of 26, so byte i of
# any body is chr(ord('a') + i % 26) across blocks.
my $BLOCK = join('', 'a' .. 'z') x 2521;

my $lsel = IO::Select->new($srv);
while (1) {
    # With --watch-parent, exit when the process that started us is gone
    # (a test killed before its teardown).
    if ($watch_parent && getppid() != $ppid) {
        kill 'TERM', keys %kids;
        exit 0;
    }
    next unless $lsel->can_read(0.5);
    my $c = $srv->accept;
    next unless $c;
    # Keep SIGCHLD out until the child is recorded, so %kids never holds
    # a PID that was already reaped.
    sigprocmask(SIG_BLOCK, $chld);
    my $pid = fork();
    if (!defined $pid) {
        sigprocmask(SIG_UNBLOCK, $chld);
        close $c;
        sleep 0.05;
        next;
    }
    if ($pid == 0) {
        $SIG{TERM} = $SIG{INT} = 'DEFAULT';
        $SIG{CHLD} = 'DEFAULT';
        sigprocmask(SIG_UNBLOCK, $chld);
        close $srv;
        serve($c);
        POSIX::_exit(0);
    }
    $kids{$pid} = 1;
    sigprocmask(SIG_UNBLOCK, $chld);
    close $c;
}

###########################################################################
# One connection

my $c;      # the client socket
my $buf;    # bytes read and not yet used

sub logv { print STDERR "[$name $$] @_\n" if $verbose }

# Reads more into $buf; 0 on EOF, error or idle timeout.
sub fill {
    my ($timeout) = @_;
    my $deadline = time + ($timeout // $idle_timeout);
    my $sel = IO::Select->new($c);
    while (1) {
        POSIX::_exit(0) if getppid() != $parent;
        my $left = $deadline - time;
        return 0 if $left <= 0;
        next unless $sel->can_read($left > 1 ? 1 : $left);
        my $n = sysread($c, $buf, 65536, length $buf);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            return 0;
        }
        return $n > 0 ? 1 : 0;
    }
}

sub out {
    my ($data) = @_;
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($c, $data, length($data) - $off, $off);
        if (!defined $n) {
            next if $! == EINTR;
            logv("write: $!");
            POSIX::_exit(0);
        }
        $off += $n;
    }
}

# Reads a line (up to LF) from the connection; undef on EOF.
sub read_line {
    my $i;
    while (($i = index($buf, "\n")) < 0) {
        return undef if length $buf > 65536 || !fill();
    }
    my $l = substr($buf, 0, $i + 1);
    $buf = substr($buf, $i + 1);
    return $l;
}

# Streams the request body to $cb; returns the body length or undef on
# EOF or a framing error.
sub read_body {
    my ($h, $cb) = @_;
    my $total = 0;
    if (($h->{'transfer-encoding'} || '') =~ /chunked/i) {
        while (1) {
            my $l = read_line();
            return undef unless defined $l;
            return undef unless $l =~ /^([0-9a-fA-F]+)/;
            my $n = hex $1;
            if ($n == 0) {
                while (1) {
                    my $t = read_line();
                    return undef unless defined $t;
                    last if $t =~ /^\r?\n$/;
                }
                return $total;
            }
            while ($n > 0) {
                return undef unless length $buf || fill();
                my $take = $n < length $buf ? $n : length $buf;
                $cb->(substr($buf, 0, $take));
                $buf = substr($buf, $take);
                $n -= $take;
                $total += $take;
            }
            my $crlf = read_line();
            return undef unless defined $crlf && $crlf =~ /^\r?\n$/;
        }
    }
    if (defined $h->{'content-length'}) {
        my $n = $h->{'content-length'};
        return undef unless $n =~ /^\s*(\d+)\s*$/;
        $n = $1;
        while ($n > 0) {
            return undef unless length $buf || fill();
            my $take = $n < length $buf ? $n : length $buf;
            $cb->(substr($buf, 0, $take));
            $buf = substr($buf, $take);
            $n -= $take;
            $total += $take;
        }
    }
    return $total;
}

sub pattern_out {
    my ($n, $chunked) = @_;
    my @sizes = (1, 3, 1000);
    my $off = 0;
    while ($n > 0) {
        my $sz = @sizes ? shift @sizes : 16384;
        $sz = $n if $sz > $n;
        if ($chunked) {
            # The block is a multiple of 26 long, so start where |off| is.
            my $p = $off % length $BLOCK;
            my $data = substr($BLOCK . $BLOCK, $p, $sz);
            out(sprintf("%x\r\n", $sz) . $data . "\r\n");
        } else {
            $sz = 65536 if $sz < 65536;
            $sz = $n if $sz > $n;
            my $p = $off % length $BLOCK;
            out(substr($BLOCK . $BLOCK, $p, $sz));
        }
        $off += $sz;
        $n -= $sz;
    }
    out("0\r\n\r\n") if $chunked;
}

sub serve {
    ($c) = @_;
    $buf = '';
    setsockopt($c, IPPROTO_TCP, TCP_NODELAY, 1);
    my $nreq = 0;

    while (1) {
        # The request head; empty lines before it are ignored (RFC 9112
        # section 2.2).
        my $end;
        while (1) {
            $buf =~ s/^(?:\r?\n)+//;
            last if ($end = index($buf, "\r\n\r\n")) >= 0;
            if (length $buf > 1024 * 1024) {
                logv("request head too large");
                return;
            }
            return unless fill();
        }
        my $head = substr($buf, 0, $end + 4);
        $buf = substr($buf, $end + 4);
        $nreq++;

        my @lines = split /\r\n/, $head;
        my $rl = shift @lines;
        my ($method, $target, $version) =
            $rl =~ m{^(\S+) (\S+) HTTP/(\d\.\d)$} or do {
                out("HTTP/1.1 400 Bad Request\r\nX-Backend: $name\r\n"
                    . "Connection: close\r\nContent-Length: 0\r\n\r\n");
                return;
            };
        my %h;
        for my $l (@lines) {
            my ($k, $v) = $l =~ /^([^:]+):[ \t]*(.*?)[ \t]*$/ or next;
            $k = lc $k;
            $h{$k} = exists $h{$k} ? "$h{$k}, $v" : $v;
        }
        my $path = $target;
        $path =~ s/\?.*//s;
        $path =~ s{^https?://[^/]*}{}i;
        logv("$method $target HTTP/$version");

        my $conn = lc($h{connection} || '');
        my $keep = $version eq '1.1' ? $conn !~ /\bclose\b/
            : $conn =~ /\bkeep-alive\b/;
        my $is_head = $method eq 'HEAD';
        my $has_body = ($h{'transfer-encoding'} || '') =~ /chunked/i
            || ($h{'content-length'} && $h{'content-length'} =~ /[1-9]/);

        if ($has_body && ($h{expect} || '') =~ /100-continue/i
            && !length $buf)
        {
            out("HTTP/$version 100 Continue\r\n\r\n");
        }

        my $resp = sub {
            my ($status, $body, %o) = @_;
            my $k = exists $o{keep} ? $o{keep} : $keep;
            my $r = "HTTP/1.1 $status " . ($REASON{$status} || 'Status')
                . "\r\nServer: mg-backend\r\nX-Backend: $name\r\n"
                . "X-Backend-Pid: $$\r\nX-Backend-Request: $nreq\r\n";
            $r .= "$_\r\n" for @{$o{headers} || []};
            unless ($status =~ /^(?:1|204|304)/ || $o{no_length}) {
                $r .= "Content-Type: text/plain\r\n"
                    . 'Content-Length: ' . length($body) . "\r\n";
            }
            $r .= $k ? ($version eq '1.0' ? "Connection: keep-alive\r\n" : '')
                : "Connection: close\r\n";
            $r .= "\r\n";
            $r .= $body unless $is_head || $status =~ /^(?:1|204|304)/;
            out($r);
            return $k;
        };

        # /upload hashes the body as it streams; every other path reads
        # the body first (it is part of /echo's answer).
        if ($path eq '/upload') {
            my $sha = Digest::SHA->new(1);
            my $n = read_body(\%h, sub { $sha->add($_[0]) });
            return unless defined $n;
            $resp->(200, "bytes=$n sha1=" . $sha->hexdigest) or return;
            next;
        }

        my $body = '';
        my $blen = read_body(\%h, $path eq '/echo'
            ? sub { $body .= $_[0] } : sub { });
        return unless defined $blen;

        if ($path eq '/echo') {
            $resp->(200, $head . $body) or return;

        } elsif ($path =~ m{^/status/(\d{3})$}) {
            $resp->($1, "$1\n") or return;

        } elsif ($path =~ m{^/delay/(\d+)$}) {
            sleep($1 / 1000);
            $resp->(200, "delayed $1\n") or return;

        } elsif ($path =~ m{^/bytes/(\d+)$}) {
            my $n = $1;
            $resp->(200, '', no_length => 1, headers =>
                [ 'Content-Type: application/octet-stream',
                  "Content-Length: $n" ]);
            pattern_out($n, 0) unless $is_head;
            return unless $keep;

        } elsif ($path =~ m{^/chunked/(\d+)$}) {
            my $n = $1;
            if ($version eq '1.0') {
                $resp->(200, '', no_length => 1, keep => 0);
                pattern_out($n, 0) unless $is_head;
                return;
            }
            $resp->(200, '', no_length => 1, headers =>
                [ 'Content-Type: application/octet-stream',
                  'Transfer-Encoding: chunked' ]);
            pattern_out($n, 1) unless $is_head;
            return unless $keep;

        } elsif ($path =~ m{^/close/(\d+)$}) {
            my $n = $1;
            $resp->(200, '', no_length => 1, keep => 0, headers =>
                [ 'Content-Type: application/octet-stream' ]);
            pattern_out($n, 0) unless $is_head;
            return;

        } elsif ($path eq '/drop') {
            return;

        } elsif ($path eq '/reset') {
            setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
            close $c;
            return;

        } elsif ($path eq '/garbage') {
            out("this is not an HTTP response\r\n\r\n");
            return;

        } elsif ($path eq '/ws') {
            my $up = $h{upgrade} || '';
            unless ($up =~ /\S/ && ($h{connection} || '') =~ /upgrade/i) {
                $resp->(400, "upgrade expected\n") or return;
                next;
            }
            my @hdr = ("Upgrade: $up", 'Connection: Upgrade');
            if (defined $h{'sec-websocket-key'}) {
                push @hdr, 'Sec-WebSocket-Accept: ' . sha1_base64(
                    $h{'sec-websocket-key'}
                    . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11') . '=';
            }
            $resp->(101, '', headers => \@hdr, keep => 1);
            # Echo until the client closes its side.
            while (1) {
                if (length $buf) {
                    out($buf);
                    $buf = '';
                }
                last unless fill();
            }
            shutdown($c, 1);
            return;

        } elsif ($path =~ m{^/keepalive-close(?:/(\d+))?$}) {
            my $ms = $1;
            $resp->(200, "closing\n", keep => 1);
            sleep($ms / 1000) if $ms;
            return;

        } elsif ($path eq '/head-check') {
            $resp->(200, "head-check body\n") or return;

        } else {
            $resp->(200, "$name $method $path\n") or return;
        }
    }
}
