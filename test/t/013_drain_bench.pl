
# Copyright (c) tenant_cache authors

# Drain benchmark (smoke size by default; test/bench/drain runs it at full
# size with TC_BENCH_FULL=1).  A measuring client in C (test/bench/
# drain_client.c, libpq + hiredis) times:
#  - the drain of G distinct tenant globs queued in one transaction over a
#    keyspace of K keys, merged (tenant_cache.merge_scans = on: one SCAN
#    pass) and with one SCAN pass per glob (merge_scans = off), and a bare
#    "SCAN cursor MATCH x COUNT 1000" iteration over the same keyspace (the
#    floor: what one pass costs Redis and the network, with no key returned);
#  - commit -> key gone, write after write, for exact-key patterns
#    ("user:{user_id}:prefs$") with E keys in Redis (UNLINK, no SCAN).
# Smoke: K = 5,000, G = 50, E = 20,000, 50 samples.  Full: K = 100,000,
# G = 500, E = 1,000,000, 1,000 samples.  Every run checks that the right
# keys are gone and the rest kept; only a full run compares the figures with
# the targets (a 2-core machine shared with other work makes small runs
# noisy).  The figures are printed as rows of the README's table.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use TenantCacheTest;

my $full = $ENV{TC_BENCH_FULL} ? 1 : 0;
my ($nkeys, $ntenants, $nglobs, $nexact, $nsamples) =
  $full
  ? (100_000, 1000, 500, 1_000_000, 1000)
  : (5_000, 100, 50, 20_000, 50);

# Build the client next to the test's files.
my $client = "$PostgreSQL::Test::Utils::tmp_check/drain_client";
my $src = "$FindBin::RealBin/../bench/drain_client.c";
my $incdir = `pg_config --includedir`;
chomp $incdir;
my ($cc_out, $cc_err) = run_command(
	[
		$ENV{CC} // 'cc', '-O2', '-Wall', '-Werror', "-I$incdir",
		'-I/usr/include/postgresql', '-o', $client, $src, '-lpq', '-lhiredis'
	]);
ok(-x $client, 'the measuring client builds') or BAIL_OUT("cc failed: $cc_err");

my $redis = TenantCacheTest::Redis->new(name => 'bench');
my $node = tc_node(
	'bench',
	redis_port => $redis->port,
	settings => {
		'tenant_cache.poll_interval_ms' => 1000,
		'tenant_cache.batch_size' => 500,
		'tenant_cache.scan_count' => 1000,
		'tenant_cache.command_timeout_ms' => 10000,
	});
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;
CREATE TABLE profiles (id int PRIMARY KEY, tenant_id int, client_id int,
                       bu_id int, user_id int, theme text);
SELECT tenant_cache.register_dependency('Profile', ARRAY['user:{user_id}:prefs$'], 'bu');
SELECT tenant_cache.watch_table('profiles', 'Profile', 'tenant_id', 'client_id', 'bu_id');
});
my $conninfo = $node->connstr('postgres');

sub client
{
	my @args = @_;
	my ($stdout, $stderr) = run_command([ $client, $args[0], $redis->port, @args[ 1 .. $#args ] ]);
	my %v = split ' ', $stdout;
	die "drain_client @args: $stderr" if $stderr ne '' || !%v;
	return \%v;
}

sub set_merge
{
	my ($value) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET tenant_cache.merge_scans = '$value'; SELECT pg_reload_conf();");
	$node->poll_query_until('postgres',
		"SELECT current_setting('tenant_cache.merge_scans') = '$value'")
	  or die "merge_scans = $value not in effect";
	return;
}

# Keys of tenants 1..G in category dash: what the G globs must clear.
sub dash_keys_left
{
	my $n = 0;
	foreach ($redis->cmd('--scan', '--pattern', 'tenant:*:client:*:bu:1:dash:*'))
	{
		$n++ if /^tenant:(\d+):/ && $1 <= $nglobs;
	}
	return $n;
}

sub drain_once
{
	my ($what) = @_;
	client('load', $nkeys, $ntenants);
	is($redis->dbsize, $nkeys, "$what: $nkeys keys loaded");
	my $dash_before = dash_keys_left();
	my $r = client('drain', $conninfo, $nglobs);
	is(dash_keys_left(), 0, "$what: the $dash_before keys of the $nglobs globs are gone");
	is($redis->dbsize, $nkeys - $dash_before, "$what: no other key was touched");
	return $r->{drain_s};
}

my $merged = drain_once('merged');
set_merge('off');
my $single = drain_once('one SCAN per glob');
set_merge('on');
my $floor = client('floor')->{floor_s};

# Exact keys: E keys in Redis, one row per sample.
$node->safe_psql('postgres',
	"INSERT INTO profiles SELECT u, u % 100, 1, 1, u, 'x' FROM generate_series(1, $nsamples) u");
$node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM tenant_cache.queue')
  or die 'queue not drained';
client('loadexact', $nexact);
is($redis->dbsize, $nexact, "exact: $nexact keys loaded");
$redis->cmd('CONFIG', 'RESETSTAT');
my $lat = client('latency', $conninfo, $nsamples);
is($redis->dbsize, $nexact - $nsamples, "exact: $nsamples keys cleared, no other");
my ($scan_calls) = map { /^cmdstat_scan:calls=(\d+)/ ? $1 : () } $redis->cmd('INFO', 'commandstats');
is($scan_calls // 0, 0, 'exact: no SCAN was sent');

my $ratio_single = $merged / $single;
my $ratio_floor = $merged / $floor;
my @rows = (
	sprintf('| %s keys, %d distinct tenant globs queued: drain time merged / one SCAN per glob | %.4f (%.3f s / %.3f s) | <= 0.02 |',
		commify($nkeys), $nglobs, $ratio_single, $merged, $single),
	sprintf('| same: merged drain time / one bare `SCAN 0 MATCH x COUNT 1000` pass over the keyspace (the floor) | %.2f (%.3f s / %.3f s) | <= 2 |',
		$ratio_floor, $merged, $floor),
	sprintf('| commit -> key gone with %s keys and exact-key patterns (no SCAN), %d writes | p50 %.3f ms, p99 %.3f ms (max %.3f ms) | p50 <= 1 ms, p99 <= 3 ms |',
		commify($nexact), $lat->{samples}, $lat->{p50_ms}, $lat->{p99_ms}, $lat->{max_ms}));
my $mode = $full ? 'full' : 'smoke';
diag("drain bench ($mode): $_") foreach @rows;

if ($full)
{
	cmp_ok($ratio_single, '<=', 0.02, 'merged drain <= 0.02 x one SCAN per glob');
	cmp_ok($ratio_floor, '<=', 2, 'merged drain <= 2 x the floor');
	cmp_ok($lat->{p50_ms}, '<=', 1, 'exact keys: p50 commit -> gone <= 1 ms');
	cmp_ok($lat->{p99_ms}, '<=', 3, 'exact keys: p99 commit -> gone <= 3 ms');
}

sub commify
{
	my $n = reverse shift;
	$n =~ s/(\d{3})(?=\d)/$1,/g;
	return scalar reverse $n;
}

$node->stop;
$redis->stop;
done_testing();
