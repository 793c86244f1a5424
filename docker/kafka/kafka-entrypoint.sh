#!/bin/sh
# Start the broker: the server.properties rendered from stack/kafka.py with the service's KAFKA_*
# environment on top (env-properties.sh), the KRaft storage formatted on first start (CLUSTER_ID,
# else a random one), then kafka.Kafka in the foreground with the local stack's JVM options.
set -eu
conf=/opt/kafka/config
props=/tmp/server.properties
/opt/kafka/bin/env-properties.sh "$conf/server.properties" >"$props"
logs=$(sed -n 's/^log\.dirs=//p' "$props" | cut -d, -f1)
classpath='/opt/kafka/libs/*'
log4j="-Dlog4j2.configurationFile=$conf/log4j2.yaml"
if [ ! -f "$logs/meta.properties" ]; then
    cluster_id=${CLUSTER_ID:-$(java -cp "$classpath" "$log4j" kafka.tools.StorageTool random-uuid)}
    java -Xmx256m -cp "$classpath" "$log4j" kafka.tools.StorageTool format \
        "--cluster-id=$cluster_id" --config "$props" --ignore-formatted
fi
# shellcheck disable=SC2046,SC2086
exec java $(cat "$conf/jvm.options") ${KAFKA_HEAP_OPTS:-} ${KAFKA_OPTS:-} "$log4j" -Dkafka.logs.dir=/tmp \
    -cp "$classpath" kafka.Kafka "$props"
