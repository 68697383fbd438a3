#!/usr/bin/env bash
# Installs everything EmoStream runs on, from the package registries only:
# the Python environment, the Kafka broker jars, Spark's Kafka connector jars,
# ghz and grpcurl. Idempotent: each step is skipped when its stamp is newer than
# its inputs. Everything lands in .venv/ and .cache/ (both ignored by git).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/.cache"
venv="$root/.venv"
python=${PYTHON:-python3.11}
mkdir -p "$cache/stamps" "$cache/bin"

fresh() {  # fresh STAMP INPUT...: true when STAMP exists and is newer than every INPUT
  local stamp="$cache/stamps/$1"; shift
  [ -f "$stamp" ] || return 1
  local input
  for input in "$@"; do [ "$input" -nt "$stamp" ] && return 1; done
  return 0
}
stamp() { touch "$cache/stamps/$1"; }

# 1. Python: one virtual environment with the pinned dependencies.
if ! fresh python "$root/pyproject.toml"; then
  echo "bootstrap: python environment"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet -e "$root[server,dev]"
  stamp python
fi

# 2. Kafka broker jars (KRaft), from Maven Central.
if ! fresh kafka "$root/deploy/kafka/pom.xml"; then
  echo "bootstrap: kafka broker jars"
  rm -rf "$cache/kafka/libs"
  (cd "$root/deploy/kafka" && mvn --batch-mode --quiet dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$cache/kafka/libs")
  stamp kafka
fi

# 3. Spark's Kafka source for the pinned pyspark, and protobuf-java; the
#    wheel has the rest.
if ! fresh spark "$root/deploy/spark/pom.xml"; then
  echo "bootstrap: spark kafka connector jars"
  rm -rf "$cache/spark/jars"
  (cd "$root/deploy/spark" && mvn --batch-mode --quiet dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$cache/spark/jars" \
    -DincludeArtifactIds=spark-sql-kafka-0-10_2.13,spark-token-provider-kafka-0-10_2.13,kafka-clients,commons-pool2,protobuf-java)
  stamp spark
fi

# 3b. The aggregator's tap decoder: aggregator/jvm compiled against the wheel's
#     Spark and protobuf-java, with the descriptor set it reads packed in.
decoder_src="$root/aggregator/jvm/emostream/aggregator/TapDecoder.java"
descriptors="$root/deploy/envoy/emostream.pb"
if ! fresh decoder "$decoder_src" "$descriptors" "$cache/stamps/spark" "$cache/stamps/python"; then
  echo "bootstrap: aggregator tap decoder jar"
  command -v javac >/dev/null || { echo "bootstrap: javac (JDK 17+) not found" >&2; exit 1; }
  spark_jars=$("$venv/bin/python" -c 'import pathlib, pyspark; print(pathlib.Path(pyspark.__file__).parent / "jars")')
  build="$cache/decoder"
  rm -rf "$build" && mkdir -p "$build/classes"
  javac --release 17 -nowarn -d "$build/classes" \
    -cp "$spark_jars/*:$cache/spark/jars/*" "$decoder_src"
  cp "$descriptors" "$build/classes/emostream.pb"
  jar --create --file "$cache/spark/jars/emostream-aggregator.jar" -C "$build/classes" .
  stamp decoder
fi

# 4. ghz and grpcurl, from the Go module proxy.
if ! fresh gotools "$root/deploy/bootstrap.sh"; then
  echo "bootstrap: ghz and grpcurl"
  GOBIN="$cache/bin" go install github.com/bojand/ghz/cmd/ghz@v0.93.0
  GOBIN="$cache/bin" go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3
  stamp gotools
fi
