#!/bin/sh
# Make sure Mosquitto is installed before `make test` runs anything: the suite starts a
# private broker. Where it is missing, root with apt-get installs it, as .ci/run used to;
# anyone else gets one line saying what to install, and the exit status 1.
#
# MOSQUITTO_PATHS (default: the places Debian and a source build put it) is where to look
# besides PATH; the tests of this script point it elsewhere.
set -u

paths=${MOSQUITTO_PATHS-/usr/sbin/mosquitto /usr/local/sbin/mosquitto}

found() {
    command -v mosquitto >/dev/null 2>&1 && return 0
    for path in $paths; do
        [ -x "$path" ] && return 0
    done
    return 1
}

found && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "make test: Mosquitto is missing; installing it with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null && found; then
        exit 0
    fi
fi
echo "make test needs Mosquitto: run \`sudo apt-get install -y mosquitto\` (or your system's equivalent)" >&2
exit 1
