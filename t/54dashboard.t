#!/usr/bin/perl

# The Grafana dashboard conf.d/examples/grafana-meshgate.json: valid JSON
# in Grafana's model (schema 36+, unique panel ids, panels inside the
# 24-column grid, every query on the templated Prometheus data source);
# every PromQL expression names only the metric families meshgate
# exports (t/lib/Test/Metrics.pm, docs/observability.md), with their own
# labels, counters only under rate()/increase(), histogram buckets only
# under histogram_quantile(), legends only from labels the query keeps and
# variables the dashboard defines; every family is shown somewhere, and
# docs/observability.md documents each with its type and labels. With
# Prometheus installed (required under CI), every expression is evaluated
# by a real Prometheus server, which refuses any syntax error.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP ();
use Test::More;
use Test::Meshgate ();
use Test::Metrics;

my $file = "$FindBin::Bin/../conf.d/examples/grafana-meshgate.json";
my %FAM = %Test::Metrics::FAMILIES;
my $CI = ($ENV{CI} // '') eq 'true';

my $text = Test::Meshgate::read_file($file);
ok(length $text, 'the dashboard file exists');
my $d = eval { JSON::PP->new->decode($text) };
ok($d, 'the dashboard is valid JSON') or diag($@);
$d ||= {};

###########################################################################
# Grafana's model

cmp_ok($d->{schemaVersion} // 0, '>=', 36, 'schemaVersion 36+ (Grafana 9+)');
like($d->{uid} // '', qr/^[a-zA-Z0-9_-]{1,40}$/, 'a uid');
ok(length($d->{title} // ''), 'a title');
ok(!defined $d->{id}, 'no id of its own (import assigns one)');

my %vars = map { $_->{name} => $_ } @{$d->{templating}{list} || []};
is($vars{datasource}{type} // '', 'datasource',
    'a templated data source variable');
is($vars{datasource}{query} // '', 'prometheus', '... of Prometheus');
for my $v (qw(region instance cluster route)) {
    is($vars{$v}{type} // '', 'query', "template variable $v");
    is($vars{$v}{datasource}{uid} // '', '${datasource}',
        "template variable $v uses the data source variable");
}

# Every panel, rows' nested panels included.
my @panels;
my @todo = @{$d->{panels} || []};
while (my $p = shift @todo) {
    push @panels, $p;
    push @todo, @{$p->{panels} || []};
}
cmp_ok(scalar @panels, '>=', 20, scalar(@panels) . ' panels');
my %ids;
$ids{$_->{id} // 'none'}++ for @panels;
is_deeply([ grep { $ids{$_} > 1 || $_ eq 'none' } sort keys %ids ], [],
    'every panel has its own id');
my @offgrid = grep {
    my $g = $_->{gridPos} || {};
    !defined $g->{x} || !defined $g->{w} || !$g->{h} || $g->{x} < 0
        || $g->{w} < 1 || $g->{x} + $g->{w} > 24 || ($g->{y} // -1) < 0;
} @panels;
is(scalar @offgrid, 0, 'every panel lies inside the 24-column grid')
    or diag(join ', ', map { $_->{title} } @offgrid);
my %cells;
my @overlap;
for my $p (@panels) {
    my $g = $p->{gridPos} || next;
    for my $y ($g->{y} .. $g->{y} + $g->{h} - 1) {
        for my $x ($g->{x} .. $g->{x} + $g->{w} - 1) {
            push @overlap, "$p->{title} on $cells{qq{$x,$y}}"
                if $cells{"$x,$y"};
            $cells{"$x,$y"} = $p->{title};
        }
    }
}
is_deeply(\@overlap, [], 'no two panels overlap');

# The queries: [ where, expr, legend ].
my @queries;
for my $p (grep { $_->{type} ne 'row' } @panels) {
    is($p->{datasource}{uid} // '', '${datasource}',
        "panel \"$p->{title}\" uses the data source variable");
    ok(@{$p->{targets} || []}, "panel \"$p->{title}\" has queries");
    for my $tg (@{$p->{targets} || []}) {
        is($tg->{datasource}{uid} // '', '${datasource}',
            "panel \"$p->{title}\" $tg->{refId}: the data source variable");
        push @queries, [ "panel \"$p->{title}\" $tg->{refId}", $tg->{expr},
            $tg->{legendFormat} // '' ];
    }
}
for my $a (@{$d->{annotations}{list} || []}) {
    push @queries, [ "annotation \"$a->{name}\"", $a->{expr}, '' ]
        if defined $a->{expr};
}

###########################################################################
# PromQL: metric names, labels, functions, legends, variables

my %builtin = map { $_ => 1 } qw(__rate_interval __interval __range
    __interval_ms __range_s);
my %fn_counter = map { $_ => 1 } qw(rate irate increase resets);

# The family of a series name, and whether it is a histogram's part.
sub family_of {
    my ($name) = @_;
    return ($name, '') if $FAM{$name} && $FAM{$name}[0] ne 'histogram';
    if ($name =~ /^(.*)_(bucket|sum|count)$/ && $FAM{$1}
        && $FAM{$1}[0] eq 'histogram')
    {
        return ($1, $2);
    }
    return;
}

# The function whose argument list holds position |pos| of |e|.
sub enclosing_function {
    my ($e, $pos) = @_;
    my $depth = 0;
    for (my $i = $pos - 1; $i >= 0; $i--) {
        my $ch = substr($e, $i, 1);
        if ($ch eq ')') { $depth++ }
        elsif ($ch eq '(') {
            if ($depth == 0) {
                my $before = substr($e, 0, $i);
                return $before =~ /([a-z_]+)\s*$/ ? $1 : '';
            }
            $depth--;
        }
    }
    return '';
}

my (%used, @bad);
my %quantiles;
for my $q (@queries) {
    my ($where, $e, $legend) = @$q;
    push(@bad, "$where: no expression"), next unless defined $e && length $e;
    my (%labels_here, $named);
    while ($e =~ /\b([a-zA-Z_:][a-zA-Z0-9_:]*)(?=\s*[{\[)])/g) {
        my ($name, $at, $end) = ($1, $-[1], $+[1]);
        next unless $name =~ /^meshgate_/;
        $named = 1;
        my ($fam, $part) = family_of($name);
        unless ($fam) {
            push @bad, "$where: $name is not a meshgate metric family"
                . ($FAM{$name} ? ' series (a histogram needs _bucket,'
                    . ' _sum or _count)' : '');
            next;
        }
        $used{$fam}++;
        my ($type, @l) = @{$FAM{$fam}};
        my %ok = map { $_ => 1 } @l, 'instance', 'job';
        $ok{le} = 1 if $part eq 'bucket';
        $labels_here{$_} = 1 for keys %ok;
        my $fn = enclosing_function($e, $at);
        if ($type eq 'counter' || $type eq 'histogram') {
            push @bad, "$where: counter $name outside rate()/increase()"
                . " (in \"$fn\")" unless $fn_counter{$fn};
        }
        if ($part eq 'bucket') {
            push @bad, "$where: $name outside histogram_quantile()"
                unless $e =~ /histogram_quantile\s*\(/;
            $quantiles{$fam}{$1} = 1
                if $e =~ /histogram_quantile\s*\(\s*([\d.]+)/;
        }
        # Its selector's label names.
        if (substr($e, $end) =~ /^\s*\{([^}]*)\}/) {
            my $sel = $1;
            while ($sel =~ /([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"/g) {
                push @bad, "$where: $name has no label \"$1\""
                    unless $ok{$1};
            }
        }
    }
    push @bad, "$where: names no meshgate metric" unless $named;
    # by (...), without (...), on (...), ignoring (...), group_left (...)
    my %kept;
    while ($e =~ /\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g) {
        my ($kw, $list) = ($1, $2);
        for my $l (grep { length } map { s/^\s+|\s+$//gr } split /,/, $list) {
            push @bad, "$where: $kw ($l): no such label in its metrics"
                unless $labels_here{$l};
            $kept{$l} = 1 if $kw eq 'by';
        }
    }
    for my $l ($legend =~ /\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g) {
        push @bad, "$where: legend {{$l}} is not a label the query keeps"
            unless $kept{$l};
    }
    for my $v ($e =~ /\$\{?([a-zA-Z_][a-zA-Z0-9_]*)/g) {
        push @bad, "$where: \$$v is not a dashboard variable"
            unless $vars{$v} || $builtin{$v};
    }
    my $open = () = $e =~ /\(/g;
    my $close = () = $e =~ /\)/g;
    push @bad, "$where: unbalanced parentheses" unless $open == $close;
}

# The template variables' label_values() queries.
for my $v (grep { $_->{type} eq 'query' } values %vars) {
    my $q = ref $v->{query} ? $v->{query}{query} : $v->{query};
    push(@bad, "variable $v->{name}: no query"), next unless defined $q;
    is($v->{definition} // '', $q, "variable $v->{name}: definition = query");
    if ($q =~ /^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s*,\s*([a-zA-Z_]+)\s*\)$/) {
        my ($m, $sel, $l) = ($1, $2 // '', $3);
        my ($fam) = family_of($m);
        if ($fam) {
            $used{$fam}++;
            my %ok = map { $_ => 1 } @{$FAM{$fam}}[1 .. $#{$FAM{$fam}}],
                'instance', 'job';
            push @bad, "variable $v->{name}: $m has no label \"$l\""
                unless $ok{$l};
            while ($sel =~ /([a-zA-Z_]+)\s*(?:=~|!~|!=|=)/g) {
                push @bad, "variable $v->{name}: $m has no label \"$1\""
                    unless $ok{$1};
            }
        } else {
            push @bad, "variable $v->{name}: $m is not a meshgate metric";
        }
        for my $r ($sel =~ /\$([a-zA-Z_]+)/g) {
            push @bad, "variable $v->{name}: \$$r is not defined"
                unless $vars{$r};
        }
    } else {
        push @bad, "variable $v->{name}: not a label_values() query: $q";
    }
}

is_deeply(\@bad, [], scalar(@queries) . ' queries name only meshgate\'s'
    . ' families and their labels, correctly used')
    or diag(join "\n", @bad);
is_deeply([ grep { !$used{$_} } sort keys %FAM ], [],
    'every metric family is on the dashboard');
for my $fam (qw(meshgate_downstream_request_duration_seconds
    meshgate_upstream_request_duration_seconds))
{
    is_deeply([ sort keys %{$quantiles{$fam} || {}} ], [ '0.5', '0.9', '0.99' ],
        "p50, p90 and p99 of $fam");
}
ok((grep { $_->[1] =~ /meshgate_upstream_attempts_total\{[^}]*priority!="0"/
    && $_->[1] =~ m{/} } @queries),
    'the share of tries sent to other regions is shown');

###########################################################################
# The reference in docs/observability.md lists the same families, with the
# same types and labels.

{
    my $doc = Test::Meshgate::read_file("$FindBin::Bin/../docs/observability.md");
    my %doc;
    while ($doc =~ /^\| `(meshgate_[a-z0-9_]+)` \| (\w+) \|([^|]*)\|/mg) {
        my ($fam, $type, $labels) = ($1, $2, $3);
        $doc{$fam} = join ' ', $type, sort $labels =~ /`([a-z_]+)`/g;
    }
    my %want = map { $_ => join ' ', $FAM{$_}[0], sort @{$FAM{$_}}[1 .. $#{$FAM{$_}}] }
        keys %FAM;
    is_deeply(\%doc, \%want, 'docs/observability.md documents every family'
        . ' with its type and labels');
}

###########################################################################
# A real Prometheus evaluates every expression.

SKIP: {
    my $bin = find_tool('prometheus', 'TEST_MESHGATE_PROMETHEUS');
    skip 'no prometheus binary (the prometheus package)', 2
        unless $bin || $CI;
    ok($bin, 'prometheus is installed') or last;
    skip 'MESHGATE_BINARY is unset (the test harness needs it)', 1
        unless $ENV{MESHGATE_BINARY} && -x $ENV{MESHGATE_BINARY};
    my $t = Test::Meshgate->new;
    my $p = Test::Metrics::Prometheus->start($t, port => 8096,
        targets => []);
    my %sub = (__rate_interval => '1m', __interval => '15s',
        __range => '1h', __interval_ms => '15000', __range_s => '3600');
    my @refused;
    for my $q (@queries) {
        (my $e = $q->[1]) =~ s/\$\{?([a-zA-Z_][a-zA-Z0-9_]*)\}?/
            $sub{$1} \/\/ '.*'/ge;
        my $j = $p->query($e);
        push @refused, "$q->[0]: " . ($j ? "$j->{errorType}: $j->{error}"
            : 'no answer') unless $j && ($j->{status} // '') eq 'success';
    }
    is_deeply(\@refused, [], 'prometheus accepts all ' . scalar(@queries)
        . ' expressions') or diag(join "\n", @refused);
    $t->stop_and_check;
}

done_testing();
