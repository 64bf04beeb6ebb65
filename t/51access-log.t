#!/usr/bin/perl

# Access log formats: access_log_format lines of named fields and literal
# text, access_log_json lines that parse, both reopened on USR1, and whole
# lines when several workers share one JSON file.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Test::More;
use Test::Meshgate;

my $t = Test::Meshgate->new;
my $dir = $t->testdir;
my $json = JSON::PP->new;

$t->write_conf(<<'EOF');
gateway = { workers = 4; drain_timeout = 2.0; log_level = "info";
            error_log = "%%TESTDIR%%/error.log"; };
listeners = (
  { name = "text"; listen = "127.0.0.1:%%PORT_8000%%"; routes = "mesh";
    access_log = "%%TESTDIR%%/text.log";
    access_log_format = "[%method%] %path% -> %status% %bytes%B in %duration_ms%ms via %cluster%/%table%:%route% up=%upstream_addr% ua=\"%user_agent%\" ref=%referer% id=%request_id% 100%%"; },
  { name = "json"; listen = "127.0.0.1:%%PORT_8001%%"; routes = "mesh";
    access_log = "%%TESTDIR%%/json.log"; access_log_json = true; } );
routes = { mesh = (
  { domains = [ "*" ]; prefix = "/ok"; direct_response = { status = 200; body = "ok\n"; }; },
  { domains = [ "*" ]; prefix = "/"; cluster = "backend"; } ); };
clusters = ( { name = "backend"; connect_timeout = 1.0; response_timeout = 10.0;
               endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); } );
EOF

$t->run_backend(port => 8081, name => 'b1');
$t->run;

my $bport = port(8081);

# Lines of |$file| once it has at least |$n| (workers flush once a second).
sub lines_of {
    my ($file, $n) = @_;
    my @l;
    waitfor(sub { @l = split /\n/, read_file($file) // ''; @l >= $n }, 10);
    return @l;
}

# Text format: fields in order, literal text kept, quotes escaped.

like(http_get('/text?q=1', headers => [ 'User-Agent: t"ua',
                                        'X-Request-Id: req-1' ]),
    qr/^HTTP\/1\.1 200 /, 'a request on the text listener');
my ($line) = lines_of("$dir/text.log", 1);
like($line // '', qr{^\[GET\] \ /text\?q=1 \ -> \ 200 \ \d+B \ in
    \ \d+\.\d{3}ms \ via \ backend/mesh:/ \ up=127\.0\.0\.1:$bport
    \ ua="t\\x22ua" \ ref=- \ id=req-1 \ 100%$}x,
    'the text line has the fields in order')
    or diag($line);

http_get('/ok', headers => [ 'Referer: http://a.example/' ]);
my @text = lines_of("$dir/text.log", 2);
like($text[1] // '', qr{^\[GET\] \ /ok \ -> \ 200 \ \d+B \ in \ \S+ms
    \ via \ -/mesh:/ok \ up=- \ ua="-" \ ref=http://a\.example/ \ id=\S+
    \ 100%$}x,
    'missing values are "-" in text')
    or diag($text[1]);

# JSON lines: every field, numbers as numbers, strings escaped.

my $raw = http("GET /a\"b HTTP/1.1\r\nHost: j.example\r\n"
    . "User-Agent: x\ty\\z\r\nConnection: close\r\n\r\n",
    port => port(8001));
like($raw // '', qr/^HTTP\/1\.1 200 /, 'a request on the JSON listener');
my ($jl) = lines_of("$dir/json.log", 1);
my $j = eval { $json->decode($jl // '') };
ok($j, 'the JSON line parses') or diag("line: " . ($jl // '') . " $@");
$j ||= {};
is($j->{method}, 'GET', 'json method');
is($j->{path}, '/a"b', 'json path with a quote');
like($jl // '', qr{"path":"/a\\"b"}, 'the quote is escaped');
is($j->{user_agent}, "x\ty\\z", 'json user agent with a tab and backslash');
like($jl // '', qr{"user_agent":"x\\ty\\\\z"}, 'the tab is escaped as \t');
is($j->{status}, 200, 'json status');
like($jl // '', qr/"status":200,/, 'the status is a number');
like($jl // '', qr/"duration_ms":\d+\.\d+,/, 'the duration is a number');
like($jl // '', qr/"bytes":\d+,/, 'bytes is a number');
is($j->{host}, 'j.example', 'json host');
is($j->{cluster}, 'backend', 'json cluster');
is($j->{table}, 'mesh', 'json route table');
is($j->{route}, '/', 'json route');
is($j->{upstream_addr}, "127.0.0.1:$bport", 'json upstream address');
is($j->{listener}, 'json', 'json listener');
ok(exists $j->{referer} && !defined $j->{referer},
    'a missing referer is null');
is($j->{protocol}, 'HTTP/1.1', 'json protocol');
like($j->{pid} // '', qr/^\d+$/, 'json pid');
ok((grep { $_ == ($j->{pid} // -1) } $t->worker_pids),
    'the pid is the worker\'s that served it');
like($j->{time} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}$/,
    'json time: ISO 8601 with milliseconds and the UTC offset');
like($jl // '', qr/"duration":\d+\.\d{3},/, 'the duration has three decimals');

# A control byte in the target: the parser may refuse it before logging,
# but when it is logged it is escaped.
http("GET /c\x01d HTTP/1.1\r\nHost: j.example\r\nConnection: close\r\n\r\n",
    port => port(8001));
http_get('/ok', port => port(8001));
my @jl = lines_of("$dir/json.log", 2);
my $ctl = grep { /\x01/ } @jl;
is($ctl, 0, 'no raw control byte in the JSON log');
my ($cl) = grep { m{/c\\u0001d} } @jl;
SKIP: {
    skip 'the request with a control byte was refused before logging', 1
        unless defined $cl;
    is(eval { $json->decode($cl)->{path} }, "/c\x01d",
        'a control byte in the path is escaped as \u0001');
}

# USR1: the JSON log is reopened.

rename "$dir/json.log", "$dir/json.log.1" or die "rename: $!";
$t->signal('USR1');
my $i = 0;
ok(waitfor(sub {
    $i++;
    http_get("/ok/after-usr1-$i", port => port(8001));
    return (read_file("$dir/json.log") // '') =~ /after-usr1/;
}, 10), 'after USR1 JSON lines go to a new file');
my $bad = 0;
for my $f ("$dir/json.log", "$dir/json.log.1") {
    for my $l (split /\n/, read_file($f) // '') {
        $bad++ unless eval { $json->decode($l); 1 };
    }
}
is($bad, 0, 'every line of both files parses');

# Several workers writing one JSON file: only whole lines.

my ($clients, $per_client) = (20, 100);
my %kids;
for my $k (1 .. $clients) {
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        my $ok = 0;
        for my $n (1 .. $per_client) {
            my $r = http_get("/ok/w$k-$n", port => port(8001),
                             timeout => 5, quiet => 1);
            $ok++ if defined $r && $r =~ /^HTTP\/1\.1 200 /;
        }
        POSIX::_exit($ok == $per_client ? 0 : 1);
    }
    $kids{$pid} = 1;
}
my $failed = 0;
for my $pid (keys %kids) {
    waitpid($pid, 0);
    $failed++ if $? != 0;
}
is($failed, 0, 'every client got its answers');

my (%pids, %paths);
my $want = $clients * $per_client;
waitfor(sub {
    %paths = ();
    for my $l (split /\n/, read_file("$dir/json.log") // '') {
        $paths{$1} = 1 if $l =~ m{"path":"(/ok/w[^"]*)"};
    }
    keys %paths >= $want;
}, 10);
my $content = read_file("$dir/json.log") // '';
like($content, qr/\n\z/, 'the shared file ends with a whole line');
$bad = 0;
%paths = ();
for my $l (split /\n/, $content) {
    my $o = eval { $json->decode($l) };
    unless ($o) {
        $bad++;
        next;
    }
    $pids{$o->{pid}} = 1;
    $paths{$o->{path}}++ if $o->{path} =~ m{^/ok/w};
}
is($bad, 0, 'every line of the shared file parses');
is(scalar keys %paths, $want, "all $want requests are logged");
is(scalar(grep { $_ != 1 } values %paths), 0, 'each of them once');
cmp_ok(scalar keys %pids, '>', 1, 'several workers wrote the file');

# Config errors, with file and line.

my $bad_conf = "$dir/bad.conf";
open(my $fh, '>', $bad_conf) or die "$bad_conf: $!";
print $fh <<'EOF';
listeners = ( { name = "mesh"; listen = "127.0.0.1:18000"; routes = "mesh";
                access_log = "/dev/null";
                access_log_format = "%client% %nope% %status%"; },
              { name = "m2"; listen = "127.0.0.1:18001"; routes = "mesh";
                access_log_format = "%status"; },
              { name = "m3"; listen = "127.0.0.1:18002"; routes = "mesh";
                access_log_format = "%status%"; access_log_json = true; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/";
                      direct_response = { status = 200; }; } ); };
EOF
close($fh);
my $r = $t->run_binary('-t', '-c', $bad_conf);
is($r->{status}, 1, 'a bad access_log_format fails the check');
like($r->{stderr}, qr/\Q$bad_conf\E:3: unknown field "%nope%" in access_log_format/,
    'an unknown field is reported with file and line');
like($r->{stderr}, qr/\Q$bad_conf\E:5: unterminated field "%status"/,
    'an unterminated field is reported');
like($r->{stderr}, qr/\Q$bad_conf\E:7: access_log_format cannot be used with access_log_json/,
    'format and json together are refused');

done_testing();
