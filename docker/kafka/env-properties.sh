#!/bin/sh
# Print the server.properties FILE with every KAFKA_* variable of the environment applied on top,
# the way the apache/kafka image reads them: KAFKA_LOG_DIRS sets log.dirs, "__" stands for "_"
# and "___" for "-"; a set variable replaces the file's line for that key. The launcher's own
# variables (KAFKA_HEAP_OPTS, KAFKA_OPTS, ...) are JVM settings, not broker properties.
#
#   env-properties.sh FILE
set -eu
props=$(cat "$1")
for name in $(env | sed -n 's/^\(KAFKA_[A-Za-z0-9_]*\)=.*/\1/p' | sort); do
    case "$name" in
        KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_LOG4J_OPTS | KAFKA_JMX_OPTS) continue ;;
    esac
    key=$(echo "${name#KAFKA_}" | tr '[:upper:]' '[:lower:]' | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g')
    value=$(printenv "$name")
    props=$(printf '%s\n' "$props" | awk -v key="$key=" 'index($0, key) != 1')
    props=$(printf '%s\n%s=%s' "$props" "$key" "$value")
done
printf '%s\n' "$props"
