#!/usr/bin/env bash
# The Spark image's entrypoint, in the modes apache/spark's has:
#   executor    what Spark's Kubernetes scheduler starts in each executor pod: the executor
#               backend, configured by the SPARK_* variables Spark sets on the pod
#   driver ARGS spark-submit in client mode, for a driver pod of spark-submit's cluster mode
#   CMD ARGS    anything else runs as given (the chart runs /opt/spark/bin/spark-submit)
set -euo pipefail

case "${1:-}" in
  executor)
    shift
    # Spark passes the executor's JVM options as SPARK_JAVA_OPT_0, _1, ... in order.
    mapfile -t java_opts < <(env | sed -n 's/^SPARK_JAVA_OPT_\([0-9]*\)=\(.*\)$/\1 \2/p' | sort -n | cut -d' ' -f2-)
    exec java "${java_opts[@]}" -Xms"$SPARK_EXECUTOR_MEMORY" -Xmx"$SPARK_EXECUTOR_MEMORY" \
      -cp "${SPARK_CLASSPATH:+$SPARK_CLASSPATH:}$SPARK_HOME/jars/*" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" --cores "$SPARK_EXECUTOR_CORES" \
      --app-id "$SPARK_APPLICATION_ID" --hostname "$SPARK_EXECUTOR_POD_IP" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" --podName "$SPARK_EXECUTOR_POD_NAME" "$@"
    ;;
  driver)
    shift
    exec "$SPARK_HOME/bin/spark-submit" --deploy-mode client \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:-0.0.0.0}" "$@"
    ;;
  "")
    exec "$SPARK_HOME/bin/spark-submit" --version
    ;;
  *)
    exec "$@"
    ;;
esac
