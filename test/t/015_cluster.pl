
# Copyright (c) tenant_cache authors

# Redis Cluster (tenant_cache.redis_mode = cluster), against a real cluster
# of 3 masters and 3 replicas made with redis-cli --cluster create on
# loopback:
#  - the test's own CRC16 key slot (used to place keys) agrees with CLUSTER
#    KEYSLOT for random keys, hash tags included;
#  - from a single seed the worker finds every master; keys of two tenants
#    spread over all masters; one transaction's invalidations (exact keys,
#    some with hash tags, and SCAN globs) clear them on every master and
#    nothing else; the exact keys went straight to their slot's master (no
#    MOVED in any master's INFO errorstats) and the UNLINKs never drew
#    CROSSSLOT;
#  - a reshard (redis-cli --cluster reshard) during a stream of writes loses
#    nothing: every affected key ends gone, every other key stays, the queue
#    ends empty;
#  - so does a replica promotion (CLUSTER FAILOVER) during a stream of
#    writes.

use strict;
use warnings;

use IPC::Run;
use Time::HiRes;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use TenantCacheTest;

my @servers;
foreach my $i (1 .. 6)
{
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	push @servers,
	  TenantCacheTest::Redis->new(
		name => "node$i",
		port => $port,
		args => [
			'--cluster-enabled', 'yes',
			'--cluster-config-file', "nodes-$port.conf",
			'--cluster-node-timeout', '3000'
		]);
}
my %by_port = map { $_->port => $_ } @servers;
my @create = ('redis-cli', '--cluster', 'create',
	(map { '127.0.0.1:' . $_->port } @servers),
	'--cluster-replicas', '1', '--cluster-yes');
my ($out, $err);
ok(IPC::Run::run(\@create, '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(120)),
	'redis-cli --cluster create');
note $out;

sub cluster_ok
{
	foreach my $s (@servers)
	{
		return 0 unless grep { /^cluster_state:ok/ } $s->cmd('CLUSTER', 'INFO');
	}
	return 1;
}
ok(defined wait_until(\&cluster_ok, 60), 'the cluster is up');

# Masters and slot owners, from CLUSTER NODES.
sub cluster_map
{
	my (@owner, %masters, %ids);
	foreach my $line ($servers[0]->cmd('CLUSTER', 'NODES'))
	{
		my @f = split / /, $line;
		next unless @f >= 8 && $f[2] =~ /\bmaster\b/ && $f[2] !~ /fail/;
		my ($port) = $f[1] =~ /:(\d+)@/;
		next unless @f > 8;
		$masters{$port} = 1;
		$ids{$port} = $f[0];
		foreach my $r (@f[ 8 .. $#f ])
		{
			next if $r =~ /^\[/;
			my ($a, $b) = split /-/, $r;
			$b //= $a;
			$owner[$_] = $port foreach $a .. $b;
		}
	}
	return (\@owner, [ sort keys %masters ], \%ids);
}

sub crc16
{
	my $crc = 0;
	foreach my $c (unpack('C*', $_[0]))
	{
		$crc ^= $c << 8;
		foreach (1 .. 8)
		{
			$crc = ($crc & 0x8000) ? (($crc << 1) ^ 0x1021) : ($crc << 1);
			$crc &= 0xffff;
		}
	}
	return $crc;
}

sub key_slot
{
	my ($k) = @_;
	$k = $1 if $k =~ /^[^{]*\{([^}]+)\}/;
	return crc16($k) % 16384;
}

# 1. The key slot.
{
	my $bad = 0;
	my @chars = ('a' .. 'z', '0' .. '9', ':', '{', '}', '*');
	foreach my $i (1 .. 200)
	{
		my $k = join '', map { $chars[ int(rand(@chars)) ] } 1 .. 1 + int(rand(20));
		$k = "tenant:{t$i}:x" if $i % 10 == 0;
		my $want = $servers[0]->cmd('CLUSTER', 'KEYSLOT', $k);
		$bad++, diag("slot of '$k': $want, computed " . key_slot($k))
		  if key_slot($k) != $want;
	}
	is($bad, 0, 'the key slot agrees with CLUSTER KEYSLOT for 200 random keys');
}

# Keys, each SET on the master owning its slot.
sub set_cluster_keys
{
	my (@keys) = @_;
	my ($owner) = cluster_map();
	my %per;
	push @{ $per{ $owner->[ key_slot($_) ] } }, $_ foreach @keys;
	$by_port{$_}->set_keys(@{ $per{$_} }) foreach keys %per;
	return scalar keys %per;
}

# Every key of the cluster (KEYS * on each master).
sub cluster_keys
{
	my (undef, $masters) = cluster_map();
	my %all;
	foreach my $p (@$masters)
	{
		$all{$_} = 1 foreach $by_port{$p}->keys('*');
	}
	return \%all;
}

sub count_present
{
	my ($all, @keys) = @_;
	return scalar grep { $all->{$_} } @keys;
}

my (undef, $masters0) = cluster_map();
is(scalar @$masters0, 3, 'three masters');

my $node = tc_node(
	'cluster',
	redis_port => $servers[0]->port,
	settings => {
		'tenant_cache.redis_mode' => 'cluster',
		'tenant_cache.redis_nodes' => '127.0.0.1:' . $servers[0]->port,
		'tenant_cache.poll_interval_ms' => 200,
		'tenant_cache.max_retry_interval_ms' => 500,
		'tenant_cache.command_timeout_ms' => 3000,
		'tenant_cache.scan_count' => 20,
	});
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;
CREATE TABLE people (id text PRIMARY KEY, tenant_id text, client_id int, bu_id int);
SELECT tenant_cache.register_dependency('Person', ARRAY['person:{id}$', 'card:{id}:'], 'bu');
SELECT tenant_cache.watch_table('people', 'Person', 'tenant_id', 'client_id', 'bu_id');
});

# Keys of row $id of tenant $t.
sub row_keys
{
	my ($t, $id) = @_;
	return ("tenant:$t:client:1:bu:1:person:$id",
		"tenant:$t:client:1:bu:1:card:$id:a",
		"tenant:$t:client:1:bu:1:card:$id:b");
}

my (@affected, @kept);

sub check_round
{
	my ($what) = @_;
	my $all;
	my $secs = wait_until(
		sub { $all = cluster_keys(); count_present($all, @affected) == 0 },
		90);
	ok(defined $secs, "$what: every affected key is gone on every master");
	is(count_present($all, @affected), 0, "$what: lost = 0");
	my ($owner) = cluster_map();
	my @left = grep { $all->{$_} } @affected;
	diag "left: $_ (slot " . key_slot($_) . ' on ' . $owner->[ key_slot($_) ] . ')'
	  foreach splice(@left, 0, 10);
	is(count_present($all, @kept), scalar @kept,
		"$what: every other key is still there");
	ok($node->poll_query_until('postgres',
			'SELECT count(*) = 0 FROM tenant_cache.queue'),
		"$what: the queue ends empty");
	return;
}

sub errorstat
{
	my ($kind) = @_;
	my $n = 0;
	foreach my $s (@servers)
	{
		foreach ($s->cmd('INFO', 'errorstats'))
		{
			$n += $1 if /^errorstat_\Q$kind\E:count=(\d+)/;
		}
	}
	return $n;
}

# 2. Invalidations on every master, nothing else.
{
	my @rows = ((map { "a$_" } 1 .. 40), '{h1}x', '{h2}y', 'z{h3}');
	foreach my $id (@rows, map { "k$_" } 1 .. 20)
	{
		my @k = row_keys(1, $id);
		if ($id =~ /^k/) { push @kept, @k; }
		else { push @affected, @k; }
		push @kept, row_keys(2, $id);
	}
	push @kept, 'tenant:1:client:1:bu:1:person:a1:x', 'unrelated:{h1}';
	is(set_cluster_keys(@affected, @kept), 3, 'the keys are spread over all three masters');
	$servers[$_]->cmd('CONFIG', 'RESETSTAT') foreach 0 .. 5;
	$node->safe_psql('postgres',
		'INSERT INTO people VALUES '
		  . join(', ', map { "('$_', '1', 1, 1)" } @rows));
	check_round('one transaction');
	is(errorstat('MOVED'), 0, 'exact keys went straight to their slot\'s master (no MOVED)');
	is(errorstat('CROSSSLOT'), 0, 'no CROSSSLOT');
}

# 3. A reshard during a stream of writes.
{
	my ($owner, $masters, $ids) = cluster_map();
	my @ids = map { "r$_" } 1 .. 150;
	my @new = ((map { row_keys(1, $_) } @ids), (map { row_keys(2, $_) } @ids));
	push @affected, row_keys(1, $_) foreach @ids;
	push @kept, row_keys(2, $_) foreach @ids;
	set_cluster_keys(@new);
	my ($rout, $rerr) = ('', '');
	my $reshard = IPC::Run::start(
		[
			'redis-cli', '--cluster', 'reshard', '127.0.0.1:' . $masters->[0],
			'--cluster-from', $ids->{ $masters->[0] },
			'--cluster-to', $ids->{ $masters->[1] },
			'--cluster-slots', '3000', '--cluster-yes'
		],
		'<', \undef, '>', \$rout, '2>', \$rerr, IPC::Run::timeout(300));
	my $i = 0;
	foreach my $id (@ids)
	{
		$node->safe_psql('postgres', "INSERT INTO people VALUES ('$id', '1', 1, 1)");
		$i++;
	}
	my $during = $reshard->pumpable ? 1 : 0;
	ok($reshard->finish, 'redis-cli --cluster reshard');
	note "reshard was still running when the $i writes ended: $during";
	my ($owner2) = cluster_map();
	my $moved = grep { ($owner->[$_] // 0) != ($owner2->[$_] // 0) } 0 .. 16383;
	is($moved, 3000, '3000 slots moved');
	check_round('reshard during writes');
}

# 4. A replica promoted (CLUSTER FAILOVER) during a stream of writes.
{
	my (undef, $masters) = cluster_map();
	my $old = $masters->[2];
	my ($replica) = grep {
		grep { /^master_port:$old\r?$/ } $_->cmd('INFO', 'replication')
	} @servers;
	ok($replica, "a replica of master $old");
	my @ids = map { "f$_" } 1 .. 80;
	my @new = ((map { row_keys(1, $_) } @ids), (map { row_keys(2, $_) } @ids));
	push @affected, row_keys(1, $_) foreach @ids;
	push @kept, row_keys(2, $_) foreach @ids;
	set_cluster_keys(@new);
	$_->cmd('WAIT', '1', '5000') foreach map { $by_port{$_} } @$masters;
	my $n = 0;
	foreach my $id (@ids)
	{
		$node->safe_psql('postgres', "INSERT INTO people VALUES ('$id', '1', 1, 1)");
		is($replica->cmd('CLUSTER', 'FAILOVER'), 'OK', 'CLUSTER FAILOVER accepted')
		  if ++$n == 20;
	}
	ok( defined wait_until(
			sub {
				my (undef, $m) = cluster_map();
				grep { $_ == $replica->port } @$m;
			},
			60),
		'the replica is a master now');
	check_round('replica promotion during writes');
}

# 5. Figures, and a switch of mode at reload: the same drain on the
# cluster, then (redis_mode = standalone) on a single Redis.  20,000 other
# keys; one transaction of 100 rows queues 100 exact keys and 100 SCAN
# globs (scan_count 1000).  Time: from the INSERT to every key gone.
my $single = TenantCacheTest::Redis->new(name => 'single');
$node->safe_psql('postgres',
	"ALTER SYSTEM SET tenant_cache.scan_count = 1000; SELECT pg_reload_conf();");
sub drain
{
	my ($label, $tenant, $set, $present) = @_;
	my @rows = map { "$tenant-d$_" } 1 .. 100;
	my @mine = map { row_keys($tenant, $_) } @rows;
	my @filler = map { "filler:$tenant:$_" } 1 .. 20000;
	$set->(@mine, @filler);
	my $t0 = Time::HiRes::time();
	$node->safe_psql('postgres',
		'INSERT INTO people VALUES '
		  . join(', ', map { "('$_', '$tenant', 1, 1)" } @rows));
	my $secs = wait_until(sub { $present->(@mine) == 0 }, 60, $t0);
	ok(defined $secs, "$label: the 300 keys of 100 rows are gone");
	is($present->(@filler), 20000, "$label: the 20,000 other keys stay");
	note sprintf('drain figure: %s: 100 exact keys + 100 SCAN globs over 20,300 keys: %.0f ms',
		$label, 1000 * ($secs // 0));
	return;
}
drain('3-master cluster', 'c1', \&set_cluster_keys,
	sub { my $all = cluster_keys(); count_present($all, @_) });
$node->safe_psql('postgres', sprintf(
	"ALTER SYSTEM SET tenant_cache.redis_mode = 'standalone';
	 ALTER SYSTEM SET tenant_cache.redis_port = %d; SELECT pg_reload_conf();",
	$single->port));
ok($node->poll_query_until('postgres',
		"SELECT current_setting('tenant_cache.redis_mode') = 'standalone'"),
	'redis_mode = standalone at reload');
drain('single Redis', 's1', sub { $single->set_keys(@_) },
	sub { my %all = map { $_ => 1 } $single->keys('*'); count_present(\%all, @_) });
ok($node->log_contains(qr/Redis settings changed, reconnecting/),
	'the worker reconnected at reload');

$node->stop;
done_testing();
