# Shared by test/run, test/demo and test/django/run: install what a fresh
# Debian bookworm machine lacks, build tenant_cache in a tree the postgres
# user can write, and install it.  Sourced, not run.

PG_BIN=/usr/lib/postgresql/15/bin
PACKAGES="postgresql-15 postgresql-server-dev-15 libhiredis-dev redis-server
          redis-tools libipc-run-perl make gcc clang-14 libclang-rt-14-dev
          python3-django python3-django-redis python3-psycopg2 python3-redis graphviz"

require_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "run this as root (sudo $0): it installs packages and the extension," >&2
        echo "and runs the servers as the postgres user" >&2
        exit 2
    fi
}

install_packages() {
    local missing=""
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "== installing:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        # shellcheck disable=SC2086
        apt-get install -y -q $missing
    fi
}

# Copy the source to a fresh directory owned by postgres; print its path.
prepare_build_tree() {
    local src=$1 name=$2 dir
    dir=$(mktemp -d "/tmp/$name.XXXXXX")
    (cd "$src" && tar --exclude=.git --exclude='*.o' --exclude='*.bc' \
        --exclude='*.so' --exclude=tmp_check --exclude=results -cf - .) \
        | tar -C "$dir" -xf -
    chown -R postgres:postgres "$dir"
    echo "$dir"
}

as_postgres() {
    runuser -u postgres -- env PATH="$PG_BIN:$PATH" "$@"
}

build_and_install() {
    local dir=$1
    echo "== building in $dir (warnings are errors)"
    as_postgres make -C "$dir" -s COPT=-Werror PG_CONFIG=$PG_BIN/pg_config
    echo "== installing"
    make -C "$dir" -s install PG_CONFIG=$PG_BIN/pg_config
}

# A free TCP port on 127.0.0.1, from a range no package uses by default and
# below the kernel's ephemeral ports (net.ipv4.ip_local_port_range, 32768 and
# up by default): a port some client connection holds as its local port
# refuses connections, so it looks free, yet cannot be bound.
free_port() {
    local port low
    low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "$low" -gt 21000 ] 2>/dev/null || low=32768
    for port in $(shuf -i 20000-$((low - 1)) -n 50); do
        if ! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}
