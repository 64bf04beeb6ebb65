#!/usr/bin/perl

# Response compression (route "gzip" group): which responses are
# compressed (Accept-Encoding, q=0, type with and without parameters,
# default and configured types, min_length, already encoded, 206,
# no-transform, HEAD, 204/304, 4xx/5xx, direct responses), Vary added or
# appended, the framing for HTTP/1.1 (chunked), HTTP/1.0 (close) and
# HTTP/2 (DATA), keep-alive after a compressed response, a 400 MB
# compressed download with workers under 64 MiB, a trickling upstream whose
# pieces reach the client before it finishes, upstream bodies delimited by
# the close, nginx serving files as the upstream, and the -t errors for a
# bad gzip group.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Compress::Raw::Zlib;
use Digest::SHA qw(sha1_hex);
use IO::Select;
use IO::Uncompress::Gunzip qw(gunzip $GunzipError);
use Test::More;
use Time::HiRes qw(time sleep);
use Test::Meshgate;

my $t = Test::Meshgate->new;
my $dir = $t->testdir;

my $have_curl = grep { -x "$_/curl" } split /:/, $ENV{PATH};
my $curl_h2 = $have_curl && `curl --version` =~ /\bHTTP2\b/;

###########################################################################
# The upstream: a small HTTP/1.1 server whose answer the query string
# chooses, shared with the test through the body generator.
#
#   /r?s=STATUS&ct=TYPE&n=LEN&mode=length|chunked|close&ce=..&cc=..&cr=..
#      &vary=..&vary2=..&loc=..
#       a body of LEN bytes of text (body_of), sent with Content-Length,
#       chunked in 1000-byte chunks, or delimited by the close
#   /trickle?k=PIECES&gap=MS&mode=..&ct=TYPE
#       PIECES pieces (piece_of) with MS milliseconds between them; the
#       time each piece was written is appended to trickle.log

my $BODYGEN = <<'EOF';
sub body_of {
    my ($n) = @_;
    my $s = '';
    my $i = 0;
    while (length $s < $n) {
        $s .= sprintf("line %06d: <p class=\"gzip\">the quick brown fox "
            . "%d jumps over the lazy dog</p>\n", $i, $i * 7919 % 1000);
        $i++;
    }
    return substr($s, 0, $n);
}
sub piece_of {
    my ($i) = @_;
    return "piece-$i\n" . ("<div>trickling piece $i</div>\n" x 10);
}
EOF
eval $BODYGEN;
die $@ if $@;

my $server = $BODYGEN . <<'EOF';
use strict;
use warnings;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);

my ($port, $log) = @ARGV;
my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
    Listen => 128, ReuseAddr => 1) or die "listen: $!\n";
my $parent = getppid();
$SIG{CHLD} = 'IGNORE';
$SIG{PIPE} = 'IGNORE';
while (1) {
    exit 0 if getppid() != $parent;
    my $c = $srv->accept or next;
    my $pid = fork();
    next unless defined $pid;
    if ($pid) { close $c; next }
    close $srv;
    serve($c);
    POSIX::_exit(0);
}

sub out {
    my ($c, $d) = @_;
    my $off = 0;
    while ($off < length $d) {
        my $w = syswrite($c, $d, length($d) - $off, $off);
        POSIX::_exit(0) unless defined $w;
        $off += $w;
    }
}

sub unesc { my ($s) = @_; $s =~ tr/+/ /; $s =~ s/%([0-9a-fA-F]{2})/chr hex $1/ge; $s }

sub serve {
    my ($c) = @_;
    my $buf = '';
    while (1) {
        while ($buf !~ /\r\n\r\n/) {
            my $r = sysread($c, $buf, 65536, length $buf);
            return unless $r;
        }
        $buf =~ s/^(.*?)\r\n\r\n//s;
        my $head = $1;
        my ($method, $target) = $head =~ m{^(\S+) (\S+)};
        my %q;
        my ($path, $qs) = split /\?/, $target, 2;
        for (split /&/, $qs // '') {
            my ($k, $v) = split /=/, $_, 2;
            $q{$k} = unesc($v // '');
        }
        my $mode = $q{mode} || 'length';
        my $st = $q{s} || 200;
        my $h = "HTTP/1.1 $st Status\r\nServer: gzip-upstream\r\n";
        $h .= "Content-Type: $q{ct}\r\n" if defined $q{ct};
        $h .= "Content-Encoding: $q{ce}\r\n" if defined $q{ce};
        $h .= "Cache-Control: $q{cc}\r\n" if defined $q{cc};
        $h .= "Content-Range: $q{cr}\r\n" if defined $q{cr};
        $h .= "Vary: $q{vary}\r\n" if defined $q{vary};
        $h .= "Vary: $q{vary2}\r\n" if defined $q{vary2};
        $h .= "Location: $q{loc}\r\n" if defined $q{loc};
        $h .= "ETag: \"e1\"\r\n";
        if ($path eq '/trickle') {
            my $k = $q{k} || 5;
            my @p = map { piece_of($_) } 1 .. $k;
            if ($mode eq 'length') {
                my $len = 0;
                $len += length for @p;
                $h .= "Content-Length: $len\r\n\r\n";
            } elsif ($mode eq 'chunked') {
                $h .= "Transfer-Encoding: chunked\r\n\r\n";
            } else {
                $h .= "Connection: close\r\n\r\n";
            }
            out($c, $h);
            for my $i (1 .. $k) {
                sleep(($q{gap} || 500) / 1000) if $i > 1;
                out($c, $mode eq 'chunked'
                    ? sprintf("%x\r\n%s\r\n", length $p[$i - 1], $p[$i - 1])
                    : $p[$i - 1]);
                if (open my $lf, '>>', $log) {
                    printf $lf "%s piece %d %.3f\n", $q{id} // '-', $i, time;
                    close $lf;
                }
            }
            out($c, "0\r\n\r\n") if $mode eq 'chunked';
            return if $mode eq 'close';
            next;
        }
        my $body = $st =~ /^(?:1|204|304)/ ? undef : body_of($q{n} // 2000);
        unless (defined $body) {
            out($c, "$h\r\n");
            next;
        }
        if ($mode eq 'chunked' && $method ne 'HEAD') {
            $h .= "Transfer-Encoding: chunked\r\n\r\n";
            for (my $o = 0; $o < length $body; $o += 1000) {
                my $part = substr($body, $o, 1000);
                $h .= sprintf("%x\r\n%s\r\n", length $part, $part);
            }
            out($c, "${h}0\r\n\r\n");
            next;
        }
        if ($mode eq 'close') {
            out($c, "${h}Connection: close\r\n\r\n"
                . ($method eq 'HEAD' ? '' : $body));
            return;
        }
        $h .= 'Content-Length: ' . length($body) . "\r\n\r\n";
        out($c, $h . ($method eq 'HEAD' ? '' : $body));
    }
}
EOF
$t->write_file('upstream.pl', $server);

$t->run_daemon($^X, "$dir/upstream.pl", port(8082), "$dir/trickle.log");
waitforsocket('127.0.0.1:' . port(8082)) or die "the upstream did not start\n";
$t->run_backend(port => 8081, name => 'b1');

$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = (
    { name = "h1"; listen = "127.0.0.1:%%PORT_8000%%"; routes = "mesh"; },
    { name = "h2c"; listen = "127.0.0.1:%%PORT_8001%%"; h2c = true;
      routes = "mesh"; } );
routes = { mesh = (
    { domains = [ "gz.test" ]; prefix = "/"; cluster = "up";
      gzip = { types = [ "text/html", "application/json" ];
               min_length = 1024; level = 5; }; },
    { domains = [ "def.test" ]; prefix = "/"; cluster = "up"; gzip = { }; },
    { domains = [ "custom.test" ]; prefix = "/"; cluster = "up";
      gzip = { types = [ "Application/X-Custom" ]; min_length = 0;
               level = 1; }; },
    { domains = [ "plain.test" ]; prefix = "/"; cluster = "up"; },
    { domains = [ "stall.test" ]; prefix = "/"; cluster = "impatient";
      gzip = { types = [ "text/html" ]; min_length = 0; }; },
    { domains = [ "direct.test" ]; prefix = "/"; gzip = { min_length = 0; };
      direct_response = { status = 200; content_type = "text/html";
                          body = "a direct answer of some length\n"; }; },
    { domains = [ "big.test" ]; prefix = "/"; cluster = "backend";
      gzip = { types = [ "application/octet-stream" ]; level = 5; }; },
    { domains = [ "web.test" ]; prefix = "/"; cluster = "nginx";
      gzip = { types = [ "text/html", "text/plain" ]; }; } ); };
clusters = (
    { name = "up"; response_timeout = 10.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } ); },
    { name = "impatient"; response_timeout = 1.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } ); },
    { name = "backend"; response_timeout = 30.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); },
    { name = "nginx"; response_timeout = 10.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8090%%"; } ); } );
EOF
$t->run;
my $port = port(8000);
my $h2port = port(8001);

###########################################################################
# Helpers

sub gunzip_str {
    my ($z) = @_;
    my $out;
    return undef unless defined $z && length $z;
    gunzip(\$z => \$out) or return undef;
    return $out;
}

# get($query, %o): a parsed HTTP/1.x response for /r?QUERY (or |path|).
# |ae| is the Accept-Encoding value (none when undef).
sub get {
    my ($query, %o) = @_;
    my $path = $o{path} // "/r?$query";
    my @h = @{$o{headers} || []};
    push @h, "Accept-Encoding: $o{ae}" if defined $o{ae};
    my $m = $o{method} || 'GET';
    my $raw = http_get($path, host => $o{host} // 'gz.test', headers => \@h,
        method => $m, version => $o{version} // '1.1', timeout => 10);
    my $r = parse_response($raw, head => $m eq 'HEAD');
    $r->{raw} = $raw;
    return $r;
}

sub header_count {
    my ($r, $name) = @_;
    return scalar grep { lc $_->[0] eq lc $name } @{$r->{header_lines}};
}

# is_gzipped($r, $expect_body, $name): the response is compressed, has no
# Content-Length and decompresses to |expect_body|.
sub is_gzipped {
    my ($r, $body, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $ok = is($r->{headers}{'content-encoding'}, 'gzip',
        "$name: Content-Encoding: gzip");
    $ok &&= ok(!defined $r->{headers}{'content-length'},
        "$name: no Content-Length");
    my $plain = gunzip_str($r->{body});
    $ok &&= ok(defined $plain && $plain eq $body,
        "$name: the body decompresses to the original")
        or diag('got ' . length($r->{body} // '') . ' bytes, gunzip: '
            . ($GunzipError // '') . ', plain '
            . (defined $plain ? length $plain : 'undef') . ' bytes, expected '
            . length $body);
    diag(substr($r->{raw} // '', 0, 600)) unless $ok;
    return $ok;
}

# is_identity($r, $expect_body, $name): passed on as it was.
sub is_identity {
    my ($r, $body, $name, %o) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $ok = is($r->{headers}{'content-encoding'}, $o{ce},
        "$name: " . (defined $o{ce} ? "Content-Encoding stays $o{ce}"
                                    : 'no Content-Encoding'));
    if (defined $body) {
        $ok &&= is($r->{headers}{'content-length'}, length $body,
            "$name: Content-Length kept");
        $ok &&= ok($r->{body} eq $body, "$name: the body is unchanged");
    }
    diag(substr($r->{raw} // '', 0, 600)) unless $ok;
    return $ok;
}

my $B2000 = body_of(2000);

###########################################################################
# Accept-Encoding

{
    my $r = get('ct=text/html&n=2000', ae => 'gzip');
    is($r->{status}, 200, 'a text/html response through a gzip route');
    is_gzipped($r, $B2000, 'Accept-Encoding: gzip');
    ok($r->{chunked}, 'HTTP/1.1 client: the compressed body is chunked');
    ok($r->{complete}, 'HTTP/1.1 client: the chunked body ends properly');
    is($r->{headers}{vary}, 'Accept-Encoding', 'Vary: Accept-Encoding');
    cmp_ok(length $r->{body}, '<', 1000, 'the body actually shrank');

    $r = get('ct=text/html&n=2000');
    is_identity($r, $B2000, 'no Accept-Encoding');
    is($r->{headers}{vary}, 'Accept-Encoding',
        'no Accept-Encoding: Vary: Accept-Encoding all the same');

    for my $ae ('gzip;q=0', 'gzip; q=0.0', 'gzip;q=0.000, identity',
        'identity', 'deflate, br', '*;q=0', 'x-gzip-not')
    {
        $r = get('ct=text/html&n=2000', ae => $ae);
        is_identity($r, $B2000, "Accept-Encoding: $ae");
        is($r->{headers}{vary}, 'Accept-Encoding', "Accept-Encoding: $ae: Vary");
    }
    for my $ae ('GZIP', 'deflate, gzip;q=0.5', 'gzip; q=0.001', '*',
        'br;q=1.0, gzip ;q=0.8', 'identity;q=0, gzip')
    {
        is_gzipped(get('ct=text/html&n=2000', ae => $ae), $B2000,
            "Accept-Encoding: $ae");
    }
    # RFC 9110 12.5.3: "*" matches only codings not listed, so an
    # explicit gzip;q=0 is a refusal whatever "*" says.
    is_identity(get('ct=text/html&n=2000', ae => 'gzip;q=0, *'), $B2000,
        'Accept-Encoding: gzip;q=0, * (gzip refused explicitly)');
    # Two Accept-Encoding fields: the second one accepts.
    is_gzipped(get('ct=text/html&n=2000', headers => [
        'Accept-Encoding: br', 'Accept-Encoding: gzip' ]), $B2000,
        'two Accept-Encoding fields, the second with gzip');
}

###########################################################################
# Content types

{
    is_gzipped(get('ct=text/html%3B%20charset%3Dutf-8&n=2000', ae => 'gzip'),
        $B2000, 'text/html; charset=utf-8');
    is_gzipped(get('ct=TEXT/HTML;charset=UTF-8&n=2000', ae => 'gzip'),
        $B2000, 'TEXT/HTML;charset=UTF-8');
    is_gzipped(get('ct=application/json&n=2000', ae => 'gzip'),
        $B2000, 'application/json (second listed type)');

    for my $ct ('text/plain', 'image/png', 'text/htmlx', 'text/htm',
        'application/json-seq')
    {
        my $r = get("ct=$ct&n=2000", ae => 'gzip');
        is_identity($r, $B2000, "$ct is not in the route's types");
        ok(!defined $r->{headers}{vary}, "$ct: no Vary added");
    }
    my $r = get('n=2000', ae => 'gzip');
    is_identity($r, $B2000, 'no Content-Type at all');

    # The default types (gzip = { }).
    for my $ct (qw(text/html text/plain text/css text/xml text/javascript
        application/javascript application/json application/xml
        image/svg+xml))
    {
        (my $q = $ct) =~ s/\+/%2B/g;
        is_gzipped(get("ct=$q&n=2000", ae => 'gzip', host => 'def.test'),
            $B2000, "default types: $ct");
    }
    for my $ct (qw(text/csv image/png application/octet-stream)) {
        is_identity(get("ct=$ct&n=2000", ae => 'gzip', host => 'def.test'),
            $B2000, "default types: $ct is not compressed");
    }
    # A type written in upper case in the config; min_length = 0.
    is_gzipped(get('ct=application/x-custom&n=10', ae => 'gzip',
        host => 'custom.test'), body_of(10),
        'a configured type in another case, min_length 0, 10 bytes');
    is_identity(get('ct=text/html&n=2000', ae => 'gzip',
        host => 'custom.test'), $B2000,
        'text/html is not compressed where types do not name it');
    # A direct response is not compressed.
    is_identity(get('', path => '/', ae => 'gzip', host => 'direct.test'),
        "a direct answer of some length\n",
        'a direct response on a route with gzip');
    # A route without gzip.
    $r = get('ct=text/html&n=2000', ae => 'gzip', host => 'plain.test');
    is_identity($r, $B2000, 'a route without gzip');
    ok(!defined $r->{headers}{vary}, 'a route without gzip: no Vary');
}

###########################################################################
# min_length

{
    is_identity(get('ct=text/html&n=1023', ae => 'gzip'), body_of(1023),
        'Content-Length 1023 is below min_length 1024');
    is_gzipped(get('ct=text/html&n=1024', ae => 'gzip'), body_of(1024),
        'Content-Length 1024 is min_length');
    is_gzipped(get('ct=text/html&n=100&mode=chunked', ae => 'gzip'),
        body_of(100), 'a chunked upstream body of unknown length (100 bytes)');
    is_gzipped(get('ct=text/html&n=100000&mode=chunked', ae => 'gzip'),
        body_of(100000), 'a chunked upstream body of 100000 bytes');
    is_gzipped(get('ct=text/html&n=300000', ae => 'gzip'),
        body_of(300000), 'a 300000-byte body with Content-Length');
    my $r = get('ct=text/html&n=0', ae => 'gzip');
    is($r->{status}, 200, 'an empty body');
    ok(!defined $r->{headers}{'content-encoding'},
        'an empty body is not compressed');
}

###########################################################################
# Responses that stay as they are

{
    is_identity(get('ct=text/html&n=2000&ce=br', ae => 'gzip, br'), $B2000,
        'already encoded (Content-Encoding: br)', ce => 'br');
    is_identity(get('ct=text/html&n=2000&ce=gzip', ae => 'gzip'), $B2000,
        'already encoded (Content-Encoding: gzip) is not compressed twice',
        ce => 'gzip');

    my $r = get('s=206&ct=text/html&n=2000&cr=bytes%200-1999/5000',
        ae => 'gzip', headers => [ 'Range: bytes=0-1999' ]);
    is($r->{status}, 206, '206 Partial Content');
    is_identity($r, $B2000, '206 with Content-Range');
    is($r->{headers}{'content-range'}, 'bytes 0-1999/5000',
        '206: Content-Range kept');

    $r = get('ct=text/html&n=2000&cr=bytes%200-1999/5000', ae => 'gzip');
    is_identity($r, $B2000, 'a 200 that carries Content-Range');

    is_identity(get('ct=text/html&n=2000&cc=no-transform', ae => 'gzip'),
        $B2000, 'Cache-Control: no-transform');
    is_identity(get('ct=text/html&n=2000&cc=public,%20max-age=60,%20no-transform',
        ae => 'gzip'), $B2000, 'Cache-Control: public, max-age=60, no-transform');
    # Cache directives compare case-insensitively (RFC 9111 5.2).
    is_identity(get('ct=text/html&n=2000&cc=No-Transform', ae => 'gzip'),
        $B2000, 'Cache-Control: No-Transform');
    is_gzipped(get('ct=text/html&n=2000&cc=max-age=60', ae => 'gzip'),
        $B2000, 'Cache-Control without no-transform');

    $r = get('ct=text/html&n=2000', ae => 'gzip', method => 'HEAD');
    is($r->{status}, 200, 'HEAD');
    ok(!defined $r->{headers}{'content-encoding'},
        'HEAD: no Content-Encoding');
    is($r->{headers}{'content-length'}, 2000, 'HEAD: Content-Length kept');
    ok(!defined $r->{headers}{'transfer-encoding'},
        'HEAD: no Transfer-Encoding');
    is(length($r->{rest}), 0, 'HEAD: no body bytes');

    for my $st (204, 304) {
        $r = get("s=$st&ct=text/html", ae => 'gzip',
            headers => $st == 304 ? [ 'If-None-Match: "e1"' ] : []);
        is($r->{status}, $st, "status $st");
        ok(!defined $r->{headers}{'content-encoding'},
            "$st: no Content-Encoding");
        ok(!defined $r->{headers}{'transfer-encoding'},
            "$st: no Transfer-Encoding");
        is(length($r->{rest}), 0, "$st: no body bytes");
    }

    # Only 2xx and 3xx are compressed.
    for my $st (404, 500) {
        $r = get("s=$st&ct=text/html&n=2000", ae => 'gzip');
        is($r->{status}, $st, "status $st");
        is_identity($r, $B2000, "status $st (not 2xx/3xx)");
    }
    for my $st (201, 203) {
        $r = get("s=$st&ct=text/html&n=2000", ae => 'gzip');
        is($r->{status}, $st, "status $st");
        is_gzipped($r, $B2000, "status $st");
    }
    $r = get('s=302&ct=text/html&n=2000&loc=/elsewhere', ae => 'gzip');
    is($r->{status}, 302, 'status 302');
    is_gzipped($r, $B2000, '302 with a text/html body');
    is($r->{headers}{location}, '/elsewhere', '302: Location kept');
}

###########################################################################
# Vary

{
    my $r = get('ct=text/html&n=2000&vary=Origin', ae => 'gzip');
    is_gzipped($r, $B2000, 'Vary: Origin from the upstream');
    is($r->{headers}{vary}, 'Origin, Accept-Encoding',
        'Accept-Encoding is appended to the upstream Vary');
    is(header_count($r, 'vary'), 1, 'in one Vary field');

    $r = get('ct=text/html&n=2000&vary=Origin');
    is($r->{headers}{vary}, 'Origin, Accept-Encoding',
        'appended too when the client did not accept gzip');

    $r = get('ct=text/html&n=1000&vary=Origin', ae => 'gzip');
    is($r->{headers}{vary}, 'Origin',
        'a body below min_length keeps the upstream Vary as it was');

    $r = get('ct=image/png&n=2000&vary=Origin', ae => 'gzip');
    is($r->{headers}{vary}, 'Origin',
        'a type that does not qualify keeps the upstream Vary as it was');

    $r = get('ct=text/html&n=2000&vary=Origin&vary2=Cookie', ae => 'gzip');
    is_gzipped($r, $B2000, 'two upstream Vary fields');
    like($r->{headers}{vary}, qr/\bAccept-Encoding\b/i,
        'two upstream Vary fields: Accept-Encoding added');
    like($r->{headers}{vary}, qr/Origin/, 'two Vary fields: Origin kept');
    like($r->{headers}{vary}, qr/Cookie/, 'two Vary fields: Cookie kept');
    my @ae = $r->{headers}{vary} =~ /accept-encoding/gi;
    is(scalar @ae, 1, 'two Vary fields: Accept-Encoding named once');

    $r = get('ct=text/html&n=2000&vary=Accept-Encoding', ae => 'gzip');
    is($r->{headers}{vary}, 'Accept-Encoding',
        'an upstream Vary naming Accept-Encoding already is kept as it was');
}

###########################################################################
# HTTP/1.0 and keep-alive

{
    my $r = get('ct=text/html&n=20000', ae => 'gzip', version => '1.0');
    is_gzipped($r, body_of(20000), 'HTTP/1.0 client');
    ok(!defined $r->{headers}{'transfer-encoding'},
        'HTTP/1.0 client: not chunked');
    ok($r->{close_delimited}, 'HTTP/1.0 client: delimited by the close');
    like($r->{headers}{connection} // '', qr/^close$/i,
        'HTTP/1.0 client: Connection: close');

    $r = get('ct=text/html&n=20000', ae => 'gzip', version => '1.0',
        headers => [ 'Connection: keep-alive' ]);
    is_gzipped($r, body_of(20000), 'HTTP/1.0 keep-alive client');
    like($r->{headers}{connection} // '', qr/^close$/i,
        'HTTP/1.0 keep-alive client: Connection: close all the same');

    $r = get('ct=text/html&n=20000&mode=chunked', ae => 'gzip',
        version => '1.0');
    is_gzipped($r, body_of(20000), 'HTTP/1.0 client, chunked upstream');

    $r = get('ct=text/html&n=2000', version => '1.0');
    is_identity($r, $B2000, 'HTTP/1.0 client without Accept-Encoding');

    # Several compressed answers on one HTTP/1.1 connection.
    my $c = Test::Meshgate::Client->new(port => $port, timeout => 10);
    my @q = ('ct=text/html&n=5000', 'ct=text/html&n=100&mode=chunked',
        'ct=image/png&n=3000', 'ct=text/html&n=70000', 'ct=text/html&n=2000');
    my $i = 0;
    for my $q (@q) {
        $i++;
        my $rr = $c->get("/r?$q", host => 'gz.test',
            headers => [ 'Accept-Encoding: gzip' ]);
        ok($rr && $rr->{status} == 200, "keep-alive request $i answered")
            or do { diag('client: ' . $c->error); last };
        my ($n) = $q =~ /n=(\d+)/;
        if ($q =~ /png/) {
            ok($rr->{body} eq body_of($n), "keep-alive request $i: as is");
        } else {
            my $p = gunzip_str($rr->{body});
            ok(defined $p && $p eq body_of($n),
                "keep-alive request $i: decompresses");
        }
    }
    is($c->requests, scalar @q, 'all on one connection');
    ok($c->is_open, 'which is still open');
    $c->close;
}

###########################################################################
# HTTP/2 (h2c)

SKIP: {
    skip 'curl with HTTP/2 is not available', 14 unless $curl_h2;
    my $n = 0;
    my $curl = sub {
        my ($path, %o) = @_;
        $n++;
        my $bf = "$dir/h2-$n.body";
        my $hf = "$dir/h2-$n.head";
        my $w = `timeout 60 curl -sS --http2-prior-knowledge --max-time 30 -o '$bf' -D '$hf' -w '%{http_version} %{http_code}' -H 'Host: $o{host}' @{[ map { "-H '$_'" } @{$o{headers} || []} ]} 'http://127.0.0.1:$h2port$path' 2>&1`;
        my %h;
        my %cnt;
        for my $l (split /\r?\n/, read_file($hf)) {
            next unless $l =~ /^([^:\s]+):\s*(.*?)\s*$/;
            $h{lc $1} = exists $h{lc $1} ? "$h{lc $1}, $2" : $2;
            $cnt{lc $1}++;
        }
        return { w => $w, headers => \%h, count => \%cnt,
            body => read_file($bf) };
    };

    my $r = $curl->('/r?ct=text/html%3B%20charset%3Dutf-8&n=20000',
        host => 'gz.test', headers => [ 'Accept-Encoding: gzip' ]);
    is($r->{w}, '2 200', 'h2c: a compressible response');
    is($r->{headers}{'content-encoding'}, 'gzip', 'h2c: content-encoding: gzip');
    ok(!defined $r->{headers}{'content-length'}, 'h2c: no content-length');
    is($r->{headers}{vary}, 'accept-encoding', 'h2c: vary: accept-encoding');
    my $p = gunzip_str($r->{body});
    ok(defined $p && $p eq body_of(20000),
        'h2c: the DATA frames decompress to the original');

    $r = $curl->('/r?ct=text/html&n=20000', host => 'gz.test');
    is($r->{headers}{'content-encoding'}, undef,
        'h2c without accept-encoding: identity');
    is($r->{headers}{'content-length'}, 20000,
        'h2c without accept-encoding: content-length kept');
    ok($r->{body} eq body_of(20000), 'h2c without accept-encoding: the body');
    is($r->{headers}{vary}, 'accept-encoding',
        'h2c without accept-encoding: vary all the same');

    $r = $curl->('/r?ct=text/html&n=200000&mode=chunked&vary=Origin',
        host => 'gz.test', headers => [ 'Accept-Encoding: gzip' ]);
    $p = gunzip_str($r->{body});
    ok(defined $p && $p eq body_of(200000),
        'h2c: a chunked upstream body of 200000 bytes decompresses');
    like($r->{headers}{vary} // '', qr/^Origin, accept-encoding$/i,
        'h2c: accept-encoding appended to the upstream vary');
    is($r->{count}{vary}, 1, 'h2c: in one vary field');

    $r = $curl->('/r?ct=text/html&n=2000&cc=no-transform', host => 'gz.test',
        headers => [ 'Accept-Encoding: gzip' ]);
    ok(!defined $r->{headers}{'content-encoding'}
        && $r->{body} eq $B2000, 'h2c: no-transform is respected');

    $r = $curl->('/r?s=304&ct=text/html', host => 'gz.test',
        headers => [ 'Accept-Encoding: gzip', 'If-None-Match: "e1"' ]);
    ok($r->{w} eq '2 304' && !defined $r->{headers}{'content-encoding'},
        'h2c: 304 without content-encoding');
}

###########################################################################
# A trickling upstream: each piece reaches the client before the next one
# is sent (Z_SYNC_FLUSH when the upstream pauses), and the response ends
# when the upstream does.

# piece_times([ [ time, gzip bytes ], ... ], $k): for each piece 1..k, the
# time its marker first came out of the inflater; the whole output; and
# whether the gzip stream ended properly (trailer included).
sub piece_times {
    my ($timed, $k) = @_;
    my ($inf) = Compress::Raw::Zlib::Inflate->new(
        -WindowBits => WANT_GZIP, -ConsumeInput => 1, -LimitOutput => 0);
    my %first;
    my $plain = '';
    my $ended = 0;
    for my $e (@$timed) {
        my ($time, $data) = @$e;
        my $out = '';
        my $st = $inf->inflate($data, $out);
        $ended = 1 if $st == Z_STREAM_END;
        $plain .= $out;
        for my $i (1 .. $k) {
            $first{$i} //= $time if index($plain, "piece-$i\n") >= 0;
        }
    }
    return (\%first, $plain, $ended);
}

# The times the upstream wrote the pieces of request |id|.
sub sent_times {
    my ($id) = @_;
    my %sent;
    for (split /\n/, read_file("$dir/trickle.log")) {
        $sent{$1} = $2 if /^\Q$id\E piece (\d+) ([\d.]+)$/;
    }
    return \%sent;
}

my $K = 5;
my $TRICKLE = join '', map { piece_of($_) } 1 .. $K;

# trickle_h1($mode, $version): 5 pieces 0.6 s apart through an HTTP/1.x
# client reading from a raw socket.
sub trickle_h1 {
    my ($mode, $ver) = @_;
    my $k = $K;
    my $id = "h1-$mode-$ver";
    my $name = "trickle ($mode upstream, HTTP/$ver client)";
    my $s = http("GET /trickle?k=$k&gap=600&mode=$mode&ct=text/html"
        . "&id=$id HTTP/$ver\r\nHost: gz.test\r\n"
        . "Accept-Encoding: gzip\r\nConnection: close\r\n\r\n",
        start => 1);
    my $raw = '';
    my @arrivals;      # [ time, raw bytes before this read ]
    my $sel = IO::Select->new($s);
    my $deadline = time + 10;
    my $eof = 0;
    while (time < $deadline) {
        next unless $sel->can_read($deadline - time);
        my $buf = '';
        my $got = sysread($s, $buf, 65536);
        next if !defined $got && $!{EAGAIN};
        if (!$got) {
            $eof = 1;
            last;
        }
        push @arrivals, [ time, length($raw) ];
        $raw .= $buf;
    }
    my $end = time;
    close $s;
    my $r = parse_response($raw);
    is($r->{headers}{'content-encoding'}, 'gzip', "$name: compressed");
    # The body bytes each read completed: the de-chunked body of the raw
    # stream up to the end of that read, less what came before.
    my @timed;
    my $prev = 0;
    for my $j (0 .. $#arrivals) {
        my $upto = $j < $#arrivals ? $arrivals[$j + 1][1] : length $raw;
        my $part = parse_response(substr($raw, 0, $upto), eof => 1);
        my $blen = length($part->{body} // '');
        push @timed, [ $arrivals[$j][0], substr($part->{body}, $prev) ]
            if $blen > $prev;
        $prev = $blen if $blen > $prev;
    }
    my ($first, $plain, $ended) = piece_times(\@timed, $k);
    ok($plain eq $TRICKLE, "$name: decompresses to all pieces");
    ok($ended, "$name: the gzip stream is complete (trailer sent)");
    ok($eof, "$name: the response ended (connection closed) "
        . 'within 10 s');
    my $sent = sent_times($id);
    ok(defined $sent->{$k} && $end - $sent->{$k} < 3,
        "$name: it ended right after the upstream finished")
        or diag(sprintf 'ended %.1f s after the last piece',
            $end - ($sent->{$k} // 0));
    my @t = map { $first->{$_} } 1 .. $k;
    if (grep { !defined } @t) {
        fail("$name: every piece was seen at its time");
        return;
    }
    my $spread = 1;
    for my $i (1 .. $k - 1) {
        $spread = 0 unless $t[$i] - $t[$i - 1] > 0.3;
    }
    ok($spread, "$name: each piece arrived on its own, about 0.6 s after "
        . 'the one before')
        or diag(join ' ', map { sprintf '%.3f', $_ - $t[0] } @t);
    # Against the upstream's own log: piece i reached the client before
    # piece i+1 was written.
    my $before = 1;
    for my $i (1 .. $k - 1) {
        $before = 0 unless defined $sent->{$i + 1}
            && $t[$i - 1] < $sent->{$i + 1};
    }
    ok($before, "$name: each piece was at the client before the upstream "
        . 'wrote the next');
}

trickle_h1('chunked', '1.1');
trickle_h1('length', '1.1');
trickle_h1('length', '1.0');

SKIP: {
    skip 'curl with HTTP/2 is not available', 3 unless $curl_h2;
    # curl -N --compressed writes each piece as soon as it is decoded.
    my $pid = open(my $fh, '-|', 'timeout', '15', 'curl', '-sSN',
        '--http2-prior-knowledge', '--compressed', '-H', 'Host: gz.test',
        "http://127.0.0.1:$h2port/trickle?k=$K&gap=600&mode=chunked"
        . "&ct=text/html&id=h2") or die "curl: $!\n";
    my %first;
    my $plain = '';
    while (my $l = <$fh>) {
        $plain .= $l;
        $first{$1} //= time if $l =~ /^piece-(\d+)$/;
    }
    my $end = time;
    close $fh;
    is($?, 0, 'trickle over h2c: curl ended well');
    ok($plain eq $TRICKLE, 'trickle over h2c: all pieces');
    my @t = map { $first{$_} // $end } 1 .. $K;
    my $spread = $end - $t[0] > 1.5;
    for my $i (1 .. $K - 1) {
        $spread = 0 unless $t[$i] - $t[$i - 1] > 0.3;
    }
    ok($spread, 'trickle over h2c: the pieces arrived one by one')
        or diag(join ' ', map { sprintf '%.3f', $_ - $t[0] } @t, $end);
}

SKIP: {
    skip 'curl with HTTP/2 is not available', 2 unless $curl_h2;
    # An upstream that falls silent in the middle of a compressed body is
    # timed out by the cluster's response_timeout (1 s), not waited for.
    my $t0 = time;
    my $out = `timeout 15 curl -sS --http2-prior-knowledge --compressed -H 'Host: stall.test' 'http://127.0.0.1:$h2port/trickle?k=2&gap=4000&mode=chunked&ct=text/html&id=stall' 2>&1`;
    my $st = $?;
    my $took = time - $t0;
    isnt($st, 0, 'a compressed h2 response whose upstream stalls is cut')
        or diag($out);
    ok($took < 3.5, 'it is cut by the 1 s silence timeout')
        or diag(sprintf 'took %.2f s', $took);
}

###########################################################################
# A large compressed download: no whole-body buffering.

sub max_worker_kb {
    my ($key) = @_;
    my $max = 0;
    for my $pid ($t->worker_pids) {
        my $s = read_file("/proc/$pid/status");
        $max = $1 if $s =~ /^$key:\s+(\d+)/m && $1 > $max;
    }
    return $max;
}

# bash($script): its stdout (a pipeline that fails prints its errors).
sub bash {
    my ($script) = @_;
    open(my $fh, '-|', 'bash', '-c', "set -o pipefail; $script")
        or die "bash: $!\n";
    local $/;
    my $out = <$fh>;
    close $fh;
    return $out // '';
}

sub pattern_sha1 {
    my ($n) = @_;
    my $sha = Digest::SHA->new(1);
    my $block = join('', 'a' .. 'z') x 2521;
    while ($n > 0) {
        my $take = $n < length $block ? $n : length $block;
        $sha->add(substr($block, 0, $take));
        $n -= $take;
    }
    return $sha->hexdigest;
}

SKIP: {
    skip 'curl is not installed', 6 unless $have_curl;
    my $n = 400 * 1000 * 1000;
    my $expect = pattern_sha1($n);
    my $start = time;
    my $out = bash("timeout 120 curl -sS --max-time 100 -D '$dir/big.head'"
        . " -H 'Host: big.test' -H 'Accept-Encoding: gzip'"
        . " http://127.0.0.1:$port/bytes/$n"
        . " | tee >(wc -c > '$dir/big.zlen') | gunzip | sha1sum");
    my $took = time - $start;
    $out =~ s/\s.*//s;
    my $head = read_file("$dir/big.head");
    like($head, qr/^Content-Encoding: gzip\r$/mi,
        '400 MB download: compressed');
    unlike($head, qr/^Content-Length:/mi, '400 MB download: no Content-Length');
    is($out, $expect, '400 MB download: decompresses to the original');
    my $zlen = read_file("$dir/big.zlen");
    $zlen =~ s/\s+//g;
    cmp_ok($zlen || 0, '<', $n / 20, '400 MB download: well compressed')
        or diag("compressed size $zlen");
    note(sprintf 'compressed 400 MB to %s bytes in %.1f s', $zlen, $took);

    if ($curl_h2) {
        $out = bash("timeout 120 curl -sS --max-time 100"
            . " --http2-prior-knowledge -H 'Host: big.test'"
            . " -H 'Accept-Encoding: gzip'"
            . " http://127.0.0.1:$h2port/chunked/200000000"
            . " | gunzip | sha1sum");
        $out =~ s/\s.*//s;
        is($out, pattern_sha1(200_000_000),
            '200 MB chunked download over h2c decompresses to the original');
    } else {
        pass('no HTTP/2 curl: h2c download skipped');
    }

    my $hwm = max_worker_kb('VmHWM');
    cmp_ok($hwm, '<', 64 * 1024,
        'every worker peaked under 64 MiB RSS while compressing')
        or diag("VmHWM $hwm kB");
    note("worker VmHWM $hwm kB");
}

###########################################################################
# nginx serving files as the upstream (its own gzip off).

SKIP: {
    skip 'nginx is not installed', 9 unless Test::Meshgate::has_nginx();
    mkdir "$dir/www";
    my $html = body_of(60000);
    my $txt = body_of(500);
    for ([ 'page.html', $html ], [ 'small.txt', $txt ],
        [ 'data.bin', $html ])
    {
        open my $fh, '>', "$dir/www/$_->[0]" or die $!;
        print $fh $_->[1];
        close $fh;
    }
    $t->run_nginx(<<'EOF') or die "nginx did not start\n";
    types { text/html html; text/plain txt; application/octet-stream bin; }
    server {
        listen 127.0.0.1:%%PORT_8090%%;
        root %%TESTDIR%%/www;
        gzip off;
        etag on;
    }
EOF
    my $r = get('', path => '/page.html', host => 'web.test', ae => 'gzip');
    is_gzipped($r, $html, 'nginx page.html');
    is($r->{headers}{vary}, 'Accept-Encoding', 'nginx page.html: Vary');
    is_identity(get('', path => '/small.txt', host => 'web.test',
        ae => 'gzip'), $txt, 'nginx small.txt below min_length');
    is_identity(get('', path => '/data.bin', host => 'web.test',
        ae => 'gzip'), $html, 'nginx data.bin (octet-stream)');

    $r = get('', path => '/page.html', host => 'web.test', ae => 'gzip',
        headers => [ 'Range: bytes=100-4099' ]);
    is($r->{status}, 206, 'nginx range request: 206');
    is_identity($r, substr($html, 100, 4000), 'nginx range request');

    my ($etag) = get('', path => '/page.html', host => 'web.test')
        ->{headers}{etag};
    $r = get('', path => '/page.html', host => 'web.test', ae => 'gzip',
        headers => [ "If-None-Match: $etag" ]);
    is($r->{status}, 304, 'nginx conditional request: 304');
    ok(!defined $r->{headers}{'content-encoding'},
        'nginx 304: no Content-Encoding');
}

###########################################################################
# An upstream body delimited by the close: the compressed response ends
# when the upstream closes. (Last among the requests: when this goes
# wrong, a worker may be left busy.)

{
    my $r = get('ct=text/html&n=50000&mode=close', ae => 'gzip');
    is_gzipped($r, body_of(50000),
        'a close-delimited upstream body, HTTP/1.1 client');
    ok($r->{complete}, 'a close-delimited upstream body, HTTP/1.1 client: '
        . 'the chunked body ends with its last chunk');

    $r = get('ct=text/html&n=50000&mode=close', ae => 'gzip',
        version => '1.0');
    is_gzipped($r, body_of(50000),
        'a close-delimited upstream body, HTTP/1.0 client');

    SKIP: {
        skip 'curl with HTTP/2 is not available', 1 unless $curl_h2;
        my $out = bash("timeout 20 curl -sS --max-time 10"
            . " --http2-prior-knowledge -H 'Host: gz.test'"
            . " -H 'Accept-Encoding: gzip'"
            . " 'http://127.0.0.1:$h2port/r?ct=text/html&n=50000&mode=close'"
            . " | gunzip 2>&1");
        ok($out eq body_of(50000),
            'a close-delimited upstream body over h2c decompresses whole')
            or diag('got ' . length($out) . ' bytes');
    }

    trickle_h1('close', '1.1');
    trickle_h1('close', '1.0');
}

###########################################################################
# meshgate -t on bad gzip groups

{
    my $i = 0;
    for my $case (
        [ 'level = 0;', qr/level/ ],
        [ 'level = 10;', qr/level/ ],
        [ 'types = [ ];', qr/gzip types must not be empty/ ],
        [ 'types = [ "text/html", "texthtml" ];',
          qr/gzip type "texthtml" must be a media type/ ],
        [ 'types = [ "text/html; charset=utf-8" ];',
          qr/must be a media type/ ],
        [ 'min_length = -1;', qr/min_length/ ],
        [ 'compress = true;', qr/unknown key "compress"/ ])
    {
        my ($g, $re) = @$case;
        $i++;
        my $f = $t->write_file("bad-$i.conf", <<"EOF");
listeners = ( { name = "l"; listen = "127.0.0.1:%%PORT_8009%%";
                routes = "r"; } );
routes = { r = ( { domains = [ "*" ]; prefix = "/"; cluster = "c";
                   gzip = { $g }; } ); };
clusters = ( { name = "c";
               endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } ); } );
EOF
        my $res = $t->run_binary('-t', '-c', $f);
        is($res->{status}, 1, "-t: gzip { $g } is refused");
        like($res->{stderr}, qr/bad-$i\.conf:4: .*$re/,
            "-t: gzip { $g }: the error names the line and the problem")
            or diag($res->{stderr});
    }
    my $f = $t->write_file('good.conf', <<'EOF');
listeners = ( { name = "l"; listen = "127.0.0.1:%%PORT_8009%%";
                routes = "r"; } );
routes = { r = ( { domains = [ "*" ]; prefix = "/"; cluster = "c";
                   gzip = { types = [ "text/html" ]; min_length = 0;
                            level = 9; }; } ); };
clusters = ( { name = "c";
               endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } ); } );
EOF
    my $res = $t->run_binary('-t', '-c', $f);
    is($res->{status}, 0, '-t: a good gzip group (level 9, min_length 0)')
        or diag($res->{stderr});
}

$t->stop_and_check;
done_testing();
