package Test::Metrics;

# Metrics helpers for the meshgate tests: a strict reader of the
# Prometheus text format (0.0.4) that meshgate's admin page
# /stats/prometheus serves, queries over what it read, the quantile
# estimate Prometheus' histogram_quantile() makes, and a real Prometheus
# server on loopback to scrape meshgate and answer PromQL.
#
#   use Test::Metrics;
#   my $m = scrape(port(8099));                 # GET /stats/prometheus
#   ok(!@{$m->{errors}}, 'the page parses') or diag(explain $m->{errors});
#   $m->value('meshgate_workers');              # the one sample, or undef
#   $m->sum('meshgate_downstream_requests_total', listener => 'mesh',
#       class => qr/^[45]xx$/);                 # sum over matching series
#   my $h = $m->histogram('meshgate_downstream_request_duration_seconds',
#       route => 'api');                        # buckets summed over series
#   quantile(0.9, $h->{buckets});               # as histogram_quantile()
#
#   my $p = Test::Metrics::Prometheus->start($t, port => 8095,
#       targets => [ "127.0.0.1:" . port(8099) ]);   # undef: no binary
#   $p->query('sum(meshgate_downstream_requests_total)');
#   $p->value('up{job="meshgate"}');            # first result's value
#
# Switches (environment): TEST_MESHGATE_PROMETHEUS and
# TEST_MESHGATE_PROMTOOL name the binaries (else found in PATH).
#
# Only core modules are used.

use strict;
use warnings;

use Exporter qw(import);
use JSON::PP ();
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use Test::Meshgate;

our @EXPORT = qw(scrape parse_prometheus quantile labels_key uri_escape
    find_tool);

###########################################################################
# The metric families of /stats/prometheus (docs/observability.md): type,
# then label names (histograms add "le" to their buckets). The tests and
# the dashboard check hold meshgate and its users to this list.

our %FAMILIES = (
    meshgate_info => [ gauge => qw(version region zone) ],
    meshgate_start_time_seconds => [ 'gauge' ],
    meshgate_workers => [ 'gauge' ],
    meshgate_generation => [ 'gauge' ],
    meshgate_reloads_total => [ 'counter' ],
    meshgate_reload_failures_total => [ 'counter' ],
    meshgate_worker_restarts_total => [ 'counter' ],
    meshgate_downstream_connections_total => [ counter => 'listener' ],
    meshgate_downstream_connections_active => [ gauge => 'listener' ],
    meshgate_downstream_requests_active => [ gauge => 'listener' ],
    meshgate_downstream_received_bytes_total => [ counter => 'listener' ],
    meshgate_downstream_sent_bytes_total => [ counter => 'listener' ],
    meshgate_downstream_requests_total =>
        [ counter => qw(listener route class) ],
    meshgate_downstream_request_duration_seconds =>
        [ histogram => qw(listener route) ],
    meshgate_upstream_requests_total =>
        [ counter => qw(cluster priority region class) ],
    meshgate_upstream_attempts_total =>
        [ counter => qw(cluster priority region) ],
    meshgate_upstream_request_duration_seconds =>
        [ histogram => qw(cluster priority region) ],
    meshgate_upstream_endpoint_requests_total =>
        [ counter => qw(cluster endpoint class) ],
    meshgate_upstream_connect_failures_total =>
        [ counter => qw(cluster endpoint) ],
    meshgate_upstream_resets_total => [ counter => qw(cluster endpoint) ],
    meshgate_upstream_connections_total => [ counter => qw(cluster endpoint) ],
    meshgate_upstream_connections_active => [ gauge => qw(cluster endpoint) ],
    meshgate_outlier_ejections_total => [ counter => qw(cluster endpoint) ],
    meshgate_endpoint_healthy => [ gauge => qw(cluster endpoint) ],
    meshgate_upstream_retries_total => [ counter => 'cluster' ],
    meshgate_upstream_timeouts_total => [ counter => 'cluster' ],
    meshgate_upstream_overflows_total => [ counter => 'cluster' ],
    meshgate_upstream_requests_active => [ gauge => 'cluster' ],
    meshgate_upstream_requests_pending => [ gauge => 'cluster' ],
    meshgate_health_check_transitions_total =>
        [ counter => qw(cluster region endpoint to) ],
    meshgate_tracing_spans_sampled_total => [ 'counter' ],
    meshgate_tracing_spans_sent_total => [ 'counter' ],
    meshgate_tracing_spans_dropped_total => [ 'counter' ],
    meshgate_xds_connected => [ 'gauge' ],
    meshgate_xds_updates_total => [ counter => 'cluster' ],
    meshgate_xds_rejections_total => [ counter => 'cluster' ],
    meshgate_xds_endpoints => [ gauge => 'cluster' ],
);

###########################################################################
# The text format

# parse_prometheus($text): a Test::Metrics object:
#   { samples => [ { name, labels => { k => v }, value, line } ],
#     types => { family => type }, help => { family => text },
#     errors => [ "line N: why", ... ] }
# Errors are what Prometheus' own parser or its linter would refuse, plus
# what a careful exporter never does: a sample before its family's TYPE,
# a family split in two, the same series twice, a histogram without its
# +Inf bucket or with _count unequal to it.
sub parse_prometheus {
    my ($text) = @_;
    my $self = bless { samples => [], types => {}, help => {}, errors => [],
        index => {} }, __PACKAGE__;
    my $err = sub { push @{$self->{errors}}, "line $_[0]: $_[1]" };
    my (%done, %seen, $current);
    my $name_re = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
    my $n = 0;
    $err->(0, 'the page does not end with a newline')
        if length $text && substr($text, -1) ne "\n";
    for my $line (split /\n/, $text) {
        $n++;
        next if $line eq '';
        if ($line =~ /^#/) {
            if ($line =~ /^# (HELP|TYPE) ($name_re)(?: (.*))?$/) {
                my ($what, $fam, $rest) = ($1, $2, $3 // '');
                my $key = $what eq 'HELP' ? 'help' : 'types';
                $err->($n, "second $what for $fam")
                    if exists $self->{$key}{$fam};
                if ($what eq 'TYPE') {
                    $err->($n, "unknown type \"$rest\" for $fam")
                        unless $rest =~ /^(?:counter|gauge|histogram|summary
                            |untyped)$/x;
                    $err->($n, "TYPE of $fam after its samples")
                        if $seen{$fam};
                }
                $self->{$key}{$fam} = $rest;
                $err->($n, "$fam comes back after another family")
                    if $done{$fam};
                $done{$current} = 1
                    if defined $current && $current ne $fam;
                $current = $fam;
            } elsif ($line =~ /^# (?:HELP|TYPE)/) {
                $err->($n, "malformed comment: $line");
            }
            next;
        }
        my ($name, $rest) = $line =~ /^($name_re)(.*)$/ or do {
            $err->($n, "not a sample: $line");
            next;
        };
        my %labels;
        if ($rest =~ s/^\{//) {
            my $ok = 1;
            until ($rest =~ s/^\}//) {
                if ($rest =~ s/^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"//) {
                    my ($k, $v) = ($1, $2);
                    $v =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
                    $err->($n, "label $k twice") if exists $labels{$k};
                    $err->($n, "reserved label name $k") if $k =~ /^__/;
                    $labels{$k} = $v;
                    $rest =~ s/^,(?=[a-zA-Z_}])//;
                } else {
                    $ok = 0;
                    last;
                }
            }
            unless ($ok) {
                $err->($n, "bad labels: $line");
                next;
            }
        }
        unless ($rest =~ /^ (\S+)(?: (-?\d+))?$/) {
            $err->($n, "bad value: $line");
            next;
        }
        my $raw = $1;
        my $value = $raw =~ /^[+-]?Inf$/ ? ($raw =~ /^-/ ? -9**9**9 : 9**9**9)
            : $raw eq 'NaN' ? 'NaN'
            : $raw =~ /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/ ? $raw + 0
            : undef;
        unless (defined $value) {
            $err->($n, "bad value: $line");
            next;
        }
        my $fam = $self->family($name);
        $err->($n, "sample of $fam before its TYPE")
            unless exists $self->{types}{$fam};
        $err->($n, "sample of $fam outside its family")
            if defined $current && $current ne $fam;
        $seen{$fam} = 1;
        my $key = "$name\{" . labels_key(\%labels) . '}';
        $err->($n, "series $key twice") if $self->{index}{$key};
        my $s = { name => $name, labels => \%labels, value => $value,
            line => $n, raw => $raw };
        push @{$self->{samples}}, $s;
        $self->{index}{$key} = $s;
    }
    $self->_check_histograms;
    return $self;
}

# The family a sample name belongs to: histogram samples drop their
# _bucket, _sum or _count suffix when the base is typed histogram.
sub family {
    my ($self, $name) = @_;
    if ($name =~ /^(.*)_(?:bucket|sum|count)$/
        && ($self->{types}{$1} // '') eq 'histogram')
    {
        return $1;
    }
    return $name;
}

sub _check_histograms {
    my ($self) = @_;
    my %h;    # family, labels without le -> { buckets, count, sum }
    for my $s (@{$self->{samples}}) {
        my $fam = $self->family($s->{name});
        next unless ($self->{types}{$fam} // '') eq 'histogram';
        my %l = %{$s->{labels}};
        my $le = delete $l{le};
        my $e = $h{$fam . '{' . labels_key(\%l) . '}'} ||= {};
        if ($s->{name} eq "${fam}_bucket") {
            push @{$self->{errors}}, "line $s->{line}: bucket without le"
                unless defined $le;
            push @{$e->{buckets}}, [ $le, $s->{value} ] if defined $le;
        } elsif ($s->{name} eq "${fam}_count") {
            $e->{count} = $s->{value};
        } else {
            $e->{sum} = $s->{value};
        }
    }
    for my $k (sort keys %h) {
        my $e = $h{$k};
        my @b = @{$e->{buckets} || []};
        my $bad = sub { push @{$self->{errors}}, "histogram $k: $_[0]" };
        $bad->('no buckets'), next unless @b;
        $bad->('no _count') unless defined $e->{count};
        $bad->('no _sum') unless defined $e->{sum};
        $bad->('the last bucket is not le="+Inf"') unless $b[-1][0] eq '+Inf';
        for my $i (1 .. $#b) {
            my ($p, $c) = ($b[$i - 1], $b[$i]);
            $bad->("le=\"$c->[0]\" does not follow le=\"$p->[0]\"")
                unless le_num($c->[0]) > le_num($p->[0]);
            $bad->("bucket le=\"$c->[0]\" ($c->[1]) below le=\"$p->[0]\""
                . " ($p->[1])") if $c->[1] < $p->[1];
        }
        $bad->("_count $e->{count} differs from le=\"+Inf\" $b[-1][1]")
            if defined $e->{count} && $b[-1][0] eq '+Inf'
                && $e->{count} != $b[-1][1];
    }
}

sub le_num {
    my ($le) = @_;
    return 9**9**9 if $le eq '+Inf';
    return $le + 0;
}

# "k1=v1,k2=v2" with the keys in order: one series' labels as a string.
sub labels_key {
    my ($l) = @_;
    return join ',', map { "$_=\"$l->{$_}\"" } sort keys %$l;
}

# scrape($admin_port, path => '/stats/prometheus'): GETs the page and
# parses it; the object also has {status}, {headers} and {text}. On no
# answer, {status} is undef and there are no samples.
sub scrape {
    my ($port, %o) = @_;
    my $raw = http_get($o{path} // '/stats/prometheus', port => $port,
        timeout => $o{timeout} // 5);
    my $r = parse_response($raw, eof => 1);
    my $m = parse_prometheus(($r->{status} // 0) == 200 ? $r->{body} : '');
    $m->{status} = $r->{status};
    $m->{headers} = $r->{headers};
    $m->{text} = $r->{body};
    return $m;
}

###########################################################################
# Queries

# The samples named |name| whose labels match every filter: a string must
# equal the label (a missing label is ""), a Regexp must match it.
sub series {
    my ($self, $name, %f) = @_;
    my @s;
    SAMPLE: for my $s (@{$self->{samples}}) {
        next unless $s->{name} eq $name;
        for my $k (keys %f) {
            my $v = $s->{labels}{$k} // '';
            next SAMPLE unless ref $f{$k} eq 'Regexp' ? $v =~ $f{$k}
                : $v eq $f{$k};
        }
        push @s, $s;
    }
    return @s;
}

# The value of the one sample that matches, undef when none does; dies
# when several do (the test asked an ambiguous question).
sub value {
    my ($self, $name, %f) = @_;
    my @s = $self->series($name, %f);
    die "value($name): " . scalar(@s) . " series match\n" if @s > 1;
    return @s ? $s[0]{value} : undef;
}

# The sum of every matching sample (0 when none matches).
sub sum {
    my ($self, $name, %f) = @_;
    my $t = 0;
    $t += $_->{value} for $self->series($name, %f);
    return $t;
}

# Every counter and gauge sample, as { "name{labels}" => value }.
sub flat {
    my ($self, %o) = @_;
    my %v;
    for my $s (@{$self->{samples}}) {
        my $type = $self->{types}{$self->family($s->{name})} // '';
        next if $o{type} && $type ne $o{type}
            && !($o{type} eq 'counter' && $type eq 'histogram');
        $v{"$s->{name}\{" . labels_key($s->{labels}) . '}'} = $s->{value};
    }
    return \%v;
}

# histogram(FAMILY, filters): the matching series summed by le:
# { buckets => [ [ le, cumulative count ], ... ] in le order, sum, count,
# series => how many were summed }.
sub histogram {
    my ($self, $fam, %f) = @_;
    my (%by, $sum, $count, %n);
    for my $s ($self->series("${fam}_bucket", %f)) {
        $by{$s->{labels}{le}} += $s->{value};
        my %l = %{$s->{labels}};
        delete $l{le};
        $n{labels_key(\%l)} = 1;
    }
    $sum += $_->{value} for $self->series("${fam}_sum", %f);
    $count += $_->{value} for $self->series("${fam}_count", %f);
    my @b = map { [ $_, $by{$_} ] }
        sort { le_num($a) <=> le_num($b) } keys %by;
    return { buckets => \@b, sum => $sum // 0, count => $count // 0,
        series => scalar keys %n };
}

# The cumulative count of bucket |le| (compared as numbers) of a
# histogram() result, undef without that bucket.
sub bucket {
    my ($h, $le) = @_;
    for my $b (@{$h->{buckets}}) {
        if ($le eq '+Inf' || $b->[0] eq '+Inf') {
            return $b->[1] if $b->[0] eq $le;
            next;
        }
        return $b->[1] if abs($b->[0] - $le) <= 1e-9 * $le;
    }
    return undef;
}

# quantile($q, [ [ le, cumulative ], ... ]): the estimate Prometheus'
# histogram_quantile() gives: linear inside the bucket that holds rank
# q x count, from the bound below it (0 for the first); in the +Inf
# bucket, the highest finite bound. undef without observations.
sub quantile {
    my ($q, $b) = @_;
    return undef unless @$b && $b->[-1][0] eq '+Inf';
    my $total = $b->[-1][1];
    return undef unless $total > 0;
    my $rank = $q * $total;
    my $i = 0;
    $i++ while $i < $#$b && $b->[$i][1] < $rank;
    return le_num($b->[$#$b - 1][0]) if $i == $#$b;
    my ($lo, $below) = $i == 0 ? (0, 0) : (le_num($b->[$i - 1][0]),
        $b->[$i - 1][1]);
    my $hi = le_num($b->[$i][0]);
    my $in = $b->[$i][1] - $below;
    return $hi if $in <= 0;
    return $lo + ($hi - $lo) * ($rank - $below) / $in;
}

sub uri_escape {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9\-_.~])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

# find_tool(NAME, ENVVAR): the path of a command, from ENVVAR or PATH,
# or undef.
sub find_tool {
    my ($name, $env) = @_;
    return $ENV{$env} if $env && $ENV{$env} && -x $ENV{$env};
    for my $d (split /:/, ($ENV{PATH} || '') . ':/usr/bin:/usr/local/bin') {
        return "$d/$name" if length $d && -x "$d/$name" && !-d _;
    }
    return undef;
}

###########################################################################
# A Prometheus server on loopback

package Test::Metrics::Prometheus;

use JSON::PP ();
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use Test::Meshgate;

# start($t, port => N, targets => [ "127.0.0.1:P" ], job => 'meshgate',
# interval => '1s', path => '/stats/prometheus'): writes a prometheus.yml
# in the test dir and runs prometheus (a helper daemon of $t, stopped by
# PID at teardown) with its data in the test dir, listening on
# 127.0.0.1:port(N); waits until /-/ready answers 200. Returns the object,
# or undef when there is no prometheus binary. Dies when it does not come
# up.
sub start {
    my ($class, $t, %o) = @_;
    my $bin = Test::Metrics::find_tool('prometheus',
        'TEST_MESHGATE_PROMETHEUS') or return undef;
    my $dir = $t->testdir . '/prometheus';
    mkdir $dir;
    my $port = port($o{port} // 8095);
    my $job = $o{job} // 'meshgate';
    my $interval = $o{interval} // '1s';
    my $targets = join ', ', map { "'$_'" } @{$o{targets} || []};
    my $mpath = $o{path} // '/stats/prometheus';
    my $yml = <<"EOF";
global:
  scrape_interval: $interval
  evaluation_interval: $interval
EOF
    $yml .= @{$o{targets} || []} ? <<"EOF" : "scrape_configs: []\n";
scrape_configs:
  - job_name: '$job'
    metrics_path: '$mpath'
    scrape_interval: $interval
    scrape_timeout: $interval
    static_configs:
      - targets: [ $targets ]
EOF
    $t->write_file('prometheus/prometheus.yml', $yml);
    my $pid = $t->run_daemon($bin, "--config.file=$dir/prometheus.yml",
        "--storage.tsdb.path=$dir/data",
        "--web.listen-address=127.0.0.1:$port", '--log.level=warn',
        "--web.console.templates=$dir", "--web.console.libraries=$dir");
    my $self = bless { t => $t, pid => $pid, port => $port, dir => $dir,
        bin => $bin }, $class;
    my $up = waitfor(sub {
        return -1 if waitpid($pid, WNOHANG) == $pid;
        my $r = parse_response(http_get('/-/ready', port => $port,
            timeout => 2, quiet => 1) // '', eof => 1);
        return ($r->{status} // 0) == 200 ? 1 : 0;
    }, $o{timeout} // 20);
    die "prometheus did not start:\n" . $t->daemon_log($pid)
        unless $up && $up == 1;
    return $self;
}

sub pid { $_[0]->{pid} }
sub http_port { $_[0]->{port} }
sub log { $_[0]->{t}->daemon_log($_[0]->{pid}) }

# GET a path of the HTTP API; the decoded JSON or undef.
sub api {
    my ($self, $path) = @_;
    my $r = parse_response(http_get($path, port => $self->{port},
        timeout => 5, quiet => 1) // '', eof => 1);
    return undef unless $r->{status};
    my $j = eval { JSON::PP::decode_json($r->{body}) };
    $j->{http_status} = $r->{status} if $j;
    return $j;
}

# query(EXPR): the decoded answer of /api/v1/query (status "success" or
# "error", with errorType and error), or undef without an answer.
sub query {
    my ($self, $expr) = @_;
    return $self->api('/api/v1/query?query=' . Test::Metrics::uri_escape($expr));
}

# value(EXPR): the number of the first result of an instant query, or
# undef when there is none.
sub value {
    my ($self, $expr) = @_;
    my $j = $self->query($expr) or return undef;
    return undef unless ($j->{status} // '') eq 'success';
    my $d = $j->{data} or return undef;
    if ($d->{resultType} eq 'scalar') {
        return $d->{result}[1];
    }
    my $r = $d->{result}[0] or return undef;
    return $r->{value}[1];
}

# The scrape target's health and last error, from /api/v1/targets.
sub target {
    my ($self) = @_;
    my $j = $self->api('/api/v1/targets') or return undef;
    return ($j->{data}{activeTargets} || [])->[0];
}

sub stop {
    my ($self) = @_;
    $self->{t}->stop_daemons($self->{pid});
}

1;
