#!/bin/bash
# kafka-topics.sh, kafka-broker-api-versions.sh: the command of Kafka's distribution this link is named after.
case "$(basename "$0")" in
    kafka-topics.sh) main=org.apache.kafka.tools.TopicCommand ;;
    kafka-broker-api-versions.sh) main=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
    *) echo "unknown Kafka tool $(basename "$0")" >&2; exit 2 ;;
esac
exec java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dlog4j2.level=WARN \
    -Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.properties -cp '/opt/kafka/libs/*' "$main" "$@"
