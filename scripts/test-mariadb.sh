#!/bin/sh
# Prepares a local MariaDB for the store tests and prints one line on stdout:
# the DSN of a user that may only create and drop upscale_test_% databases.
# Safe to run again and again: it installs, starts and creates only what is
# missing. Everything but the DSN goes to stderr so that callers can write
#   UPSCALE_TEST_MYSQL_DSN=$(scripts/test-mariadb.sh) go test ./store/...
# `scripts/test-mariadb.sh stop` stops the mariadbd this script started, and
# only that one: a MariaDB that was running before is left alone.
set -eu
exec 3>&1 1>&2

state=${XDG_STATE_HOME:-$HOME/.local/state}/upscale
pidfile=$state/test-mariadb.pid
if [ "${1:-}" = stop ]; then
	if [ -s "$pidfile" ]; then
		start-stop-daemon --stop --quiet --oknodo --retry 30 --pidfile "$pidfile" --exec /usr/sbin/mariadbd
		rm -f "$pidfile"
	fi
	exit 0
fi
mkdir -p "$state"

if [ ! -x /usr/sbin/mariadbd ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq mariadb-server >/dev/null
fi

if ! mariadb -e 'select 1' >/dev/null 2>&1; then
	mkdir -p /run/mysqld
	chown mysql:mysql /run/mysqld
	# Explicit address and port: the tests reach the server over TCP
	# whatever the local configuration says.
	start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$pidfile" \
		--exec /usr/sbin/mariadbd -- --user=mysql --bind-address=127.0.0.1 --port=3306
	i=0
	until mariadb -e 'select 1' >/dev/null 2>&1; do
		i=$((i + 1))
		if [ "$i" -ge 60 ]; then
			echo "test-mariadb: mariadbd did not answer within 30 s" >&2
			exit 1
		fi
		sleep 0.5
	done
fi

# The password is made once and kept where only root reads it, so that every
# run prints the same DSN and runs in parallel don't change it under each other.
pwfile=$state/test-mariadb-password
if [ ! -s "$pwfile" ]; then
	(umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$pwfile")
fi
pw=$(cat "$pwfile")

# Both host names: MariaDB may see a TCP client on 127.0.0.1 as either.
for host in 127.0.0.1 localhost; do
	mariadb <<SQL
CREATE USER IF NOT EXISTS 'upscale_test'@'$host' IDENTIFIED BY '$pw';
ALTER USER 'upscale_test'@'$host' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON \`upscale\\_test\\_%\`.* TO 'upscale_test'@'$host';
SQL
done

if ! mariadb --protocol=tcp -h 127.0.0.1 -P 3306 -u upscale_test -p"$pw" -e 'select 1' >/dev/null; then
	echo "test-mariadb: cannot log in as upscale_test on 127.0.0.1:3306 over TCP" >&2
	exit 1
fi

echo "mysql://upscale_test:$pw@tcp(127.0.0.1:3306)/" >&3
