#!/bin/sh
# The healthcheck of docker-compose.yml's kafka service calls this script of the apache/kafka
# image. Same tool (org.apache.kafka.tools.BrokerApiVersionsCommand, from the kafka-tools jar), with
# a small, quick-starting JVM: it runs every few seconds beside the broker.
exec java -Xmx64m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.yaml \
    -cp '/opt/kafka/libs/*' org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
