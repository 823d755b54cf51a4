
# Copyright (c) tenant_cache authors

# tenant_cache.redis_host may name a Unix-domain socket (a path starting with
# '/'): the worker and the toolbox connect through it, a reload moves them
# to TCP and back, and a path too long for a socket address is refused.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use TenantCacheTest;

# The socket lives in a short directory: sun_path holds 107 bytes.
my $sockdir = PostgreSQL::Test::Utils::tempdir_short();
my $socket = "$sockdir/redis.sock";
my $redis = TenantCacheTest::Redis->new(
	args => [ '--unixsocket', $socket, '--unixsocketperm', '700' ]);
my $node = tc_node(
	'unix_socket',
	redis_port => $redis->port,
	settings => { 'tenant_cache.redis_host' => $socket });

# Redis' CLIENT LIST: the address of each client ("addr=/path:0" for a
# socket; redis-cli, which the test uses, comes by TCP).
sub socket_clients
{
	return scalar grep { /\baddr=\Q$socket\E:0\b/ } $redis->cmd('CLIENT', 'LIST');
}

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;
CREATE TABLE people (id int PRIMARY KEY, tenant_id int, name text);
SELECT tenant_cache.register_dependency('People', ARRAY['dropdown:people']);
SELECT tenant_cache.watch_table('people', 'People', 'tenant_id');
INSERT INTO people VALUES (1, 1, 'ann'), (2, 2, 'bob');
});
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM tenant_cache.queue'),
	'the setup\'s globs are applied');
# The worker connects once the extension exists.
$node->wait_for_log(qr/tenant_cache worker connected to Redis at \Q$socket\E$/m);
pass('the worker connects through the socket');

# A write on tenant 1 clears tenant 1's key only, through the socket.
sub write_clears
{
	my ($name) = @_;
	$redis->set_keys(
		qw(tenant:1:client:1:bu:1:dropdown:people:all
		  tenant:2:client:1:bu:1:dropdown:people:all));
	$node->safe_psql('postgres', "UPDATE people SET name = name || 'x' WHERE id = 1");
	ok( TenantCacheTest::wait_until(
			sub { !$redis->exists('tenant:1:client:1:bu:1:dropdown:people:all') },
			30),
		"$name: tenant 1's key is gone");
	ok($redis->exists('tenant:2:client:1:bu:1:dropdown:people:all'),
		"$name: tenant 2's key is kept");
}

write_clears('by socket');
cmp_ok(socket_clients(), '>=', 1, 'Redis has a client on its socket');

# The toolbox (from a backend) connects the same way.
like(
	$node->safe_psql('postgres', 'SELECT message FROM tenant_cache.health()'),
	qr/Redis at \Q$socket\E answers/,
	'health() reaches Redis through the socket');
like(
	$node->safe_psql('postgres', 'SELECT redis_version FROM tenant_cache.redis_info()'),
	qr/^\d+\.\d+/,
	'redis_info() answers through the socket');

# A reload to TCP reconnects; the socket has no client left.
TenantCacheTest::set_setting($node, 'tenant_cache.redis_host', '127.0.0.1');
$node->wait_for_log(qr/Redis settings changed, reconnecting/);
write_clears('by TCP after a reload');
ok(TenantCacheTest::wait_until(sub { socket_clients() == 0 }, 30),
	'no client is left on the socket');

# And back to the socket.
my $log_offset = -s $node->logfile;
TenantCacheTest::set_setting($node, 'tenant_cache.redis_host', $socket);
$node->wait_for_log(qr/Redis settings changed, reconnecting/, $log_offset);
write_clears('by socket again');

# A missing socket: health() and the toolbox say so, with the path.
TenantCacheTest::set_setting($node, 'tenant_cache.redis_host', "$sockdir/missing.sock");
like(
	$node->safe_psql('postgres', 'SELECT message FROM tenant_cache.health()'),
	qr/Redis at \Q$sockdir\E\/missing\.sock is unreachable: could not connect to Redis: No such file or directory/,
	'health() names the missing socket');
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT * FROM tenant_cache.redis_info()');
like($err,
	qr/could not reach Redis at \Q$sockdir\E\/missing\.sock\nDETAIL:  could not connect to Redis: No such file or directory/,
	'redis_info() names the missing socket');

# A path longer than a socket address holds is refused.
my $long = '/' . ('s' x 120);
($ret, $out, $err) = $node->psql('postgres',
	"ALTER SYSTEM SET tenant_cache.redis_host = '$long'");
like($err,
	qr/invalid value for parameter "tenant_cache.redis_host".*\nDETAIL:  A Unix-domain socket path must be shorter than 108 bytes\./,
	'a socket path too long for sun_path is refused');

$node->stop;
done_testing();
