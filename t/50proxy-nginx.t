#!/usr/bin/perl

# nginx as a real upstream: static files (5 MB, HEAD, ranges, 304),
# request bodies (POST with Content-Length and chunked, WebDAV PUT), a
# gzip-chunked response and the forwarding headers nginx receives.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Digest::SHA qw(sha1_hex);
use IO::Uncompress::Gunzip qw(gunzip $GunzipError);
use Test::More;
use Test::Meshgate;

my $t = Test::Meshgate->new;
plan(skip_all => 'nginx is not installed') unless Test::Meshgate::has_nginx();

my $dir = $t->testdir;

# The static content: a 5 MB binary file and a text file for gzip.
mkdir "$dir/www";
mkdir "$dir/www/dav";
my $big = '';
{
    my $seed = 12345;
    my @block = map { $seed = ($seed * 1103515245 + 12345) % 2**31;
        chr($seed >> 16 & 255) } 1 .. 65536;
    my $b = join '', @block;
    $big = substr($b x 80, 0, 5_000_000);
    # Make every 64 KiB block different.
    substr($big, $_ * 65536, 8) = sprintf('%08d', $_) for 0 .. 75;
}
write_bin("$dir/www/big.bin", $big);
my $text = join '', map { "line $_ of a text file for gzip\n" } 1 .. 20000;
write_bin("$dir/www/text.txt", $text);
write_bin("$dir/www/index.html", "<h1>hello from nginx</h1>\n");
chmod 0777, "$dir/www/dav";

$t->run_backend(port => 8081, name => 'b1');
$t->run_nginx(<<'EOF') or die "nginx did not start\n";
    server {
        listen 127.0.0.1:%%PORT_8090%%;
        root %%TESTDIR%%/www;
        gzip on;
        gzip_types text/plain;
        gzip_min_length 0;
        gzip_proxied any;
        location /dav/ {
            dav_methods PUT DELETE;
            create_full_put_path on;
            client_max_body_size 20m;
        }
        location = /post {
            client_max_body_size 20m;
            proxy_pass http://127.0.0.1:%%PORT_8081%%/upload;
        }
        location = /headers {
            default_type text/plain;
            return 200 "host=$http_host xff=$http_x_forwarded_for via=$http_via xfp=$http_x_forwarded_proto conn=$http_connection uri=$request_uri\n";
        }
    }
EOF
$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/"; cluster = "nginx"; } ); };
clusters = ( { name = "nginx"; response_timeout = 10.0;
               endpoints = ( { address = "127.0.0.1:%%PORT_8090%%"; } ); } );
EOF
$t->run;
my $port = port(8000);

sub get {
    my ($path, %o) = @_;
    return parse_response(http_get($path, host => 'web.test', timeout => 10,
        %o), head => ($o{method} // '') eq 'HEAD');
}

# GET
my $r = get('/index.html');
is($r->{status}, 200, 'GET of a static file through the proxy');
is($r->{body}, "<h1>hello from nginx</h1>\n", 'with its content');
like($r->{headers}{server} // '', qr/^nginx/, 'nginx answered');

$r = get('/big.bin');
is($r->{headers}{'content-length'}, 5_000_000, 'the 5 MB file has its length');
is(length $r->{body}, 5_000_000, 'the whole 5 MB arrive');
is(sha1_hex($r->{body}), sha1_hex($big), 'and compare equal');

$r = get('/big.bin', method => 'HEAD');
is($r->{headers}{'content-length'}, 5_000_000, 'HEAD gets the length');
is($r->{rest}, '', 'and no body');

$r = get('/big.bin', headers => [ 'Range: bytes=1000000-1000099' ]);
is($r->{status}, 206, 'a range request gets 206');
is($r->{body}, substr($big, 1_000_000, 100), 'with the right bytes');

$r = get('/nope.html');
is($r->{status}, 404, "nginx's 404 passes through");

# 304 on a keep-alive connection, then more requests on it.
{
    my $c = Test::Meshgate::Client->new(port => $port, timeout => 10);
    my $r1 = $c->get('/index.html', host => 'web.test');
    my $lm = $r1 && $r1->{headers}{'last-modified'};
    ok($lm, 'nginx sends Last-Modified');
    my $r2 = $c->get('/index.html', host => 'web.test',
        headers => [ "If-Modified-Since: $lm" ]);
    is($r2 && $r2->{status}, 304, 'a conditional GET gets 304');
    my $ok = 0;
    for my $i (1 .. 20) {
        my $x = $c->get("/index.html?i=$i", host => 'web.test');
        $ok++ if $x && $x->{status} == 200;
    }
    is($ok, 20, '20 more requests on the same client connection');
    $c->close;
}

# gzip: nginx sends a chunked response.
$r = get('/text.txt', headers => [ 'Accept-Encoding: gzip' ]);
is($r->{headers}{'content-encoding'}, 'gzip', 'nginx compresses text.txt');
ok($r->{chunked}, 'in a chunked response');
my $plain;
gunzip(\$r->{body} => \$plain) or diag("gunzip: $GunzipError");
ok(defined $plain && $plain eq $text, 'which decompresses to the file');
$r = get('/text.txt', headers => [ 'Accept-Encoding: gzip' ],
    version => '1.0');
$plain = undef;
gunzip(\$r->{body} => \$plain);
ok(!$r->{chunked} && ($r->{headers}{'content-encoding'} // '') eq 'gzip'
    && defined $plain && $plain eq $text,
    'an HTTP/1.0 client gets it whole too');

# Forwarding headers as nginx sees them.
$r = get('/headers?x=1', host => 'Web.Test:81',
    headers => [ 'X-Forwarded-For: 192.0.2.1' ]);
is($r->{body}, 'host=Web.Test:81 xff=192.0.2.1, 127.0.0.1 via=1.1 meshgate '
    . "xfp=http conn= uri=/headers?x=1\n",
    'nginx receives Host, X-Forwarded-*, Via, no Connection');

# Request bodies.
my $body = substr($big, 0, 1_500_000);
$r = parse_response(http("POST /post HTTP/1.1\r\nHost: web.test\r\n"
    . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n"
    . $body, timeout => 10));
is($r->{status}, 200, 'a 1.5 MB POST through meshgate and nginx');
is($r->{body}, 'bytes=1500000 sha1=' . sha1_hex($body),
    'arrives intact behind nginx');

my $chunked = '';
for (my $off = 0; $off < length $body; $off += 100_003) {
    my $piece = substr($body, $off, 100_003);
    $chunked .= sprintf("%x\r\n", length $piece) . $piece . "\r\n";
}
$r = parse_response(http("POST /post HTTP/1.1\r\nHost: web.test\r\n"
    . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunked}0\r\n"
    . "\r\n", timeout => 10));
is($r->{body}, 'bytes=1500000 sha1=' . sha1_hex($body),
    'a chunked POST arrives intact behind nginx');

$r = parse_response(http("POST /index.html HTTP/1.1\r\nHost: web.test\r\n"
    . "Content-Length: 3\r\nConnection: close\r\n\r\nabc", timeout => 10));
is($r->{status}, 405, "nginx's 405 for a POST to a file passes through");

$r = parse_response(http("PUT /dav/up.bin HTTP/1.1\r\nHost: web.test\r\n"
    . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n"
    . $body, timeout => 10));
like($r->{status} // '', qr/^20[14]$/, 'a WebDAV PUT through the proxy');
is(sha1_hex(read_file("$dir/www/dav/up.bin")), sha1_hex($body),
    'stores the file nginx received intact');
$r = get('/dav/up.bin');
is(sha1_hex($r->{body}), sha1_hex($body), 'and reads back equal');

$t->stop_and_check;
done_testing();

sub write_bin {
    my ($path, $data) = @_;
    open my $fh, '>:raw', $path or die "$path: $!";
    print $fh $data;
    close $fh or die "$path: $!";
}
