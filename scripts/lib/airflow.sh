# Apache Airflow 3 (PyPI `apache-airflow`, with psycopg2 for the test DAG) for the secrets
# backend test: installed once into a virtualenv under $CREDVAULT_TOOLS (default
# /opt/credvault-tools), in the background while the build runs.
#   airflow_install_start LOG   -> starts the install if the virtualenv is not complete
#   airflow_install_wait LOG    -> waits for it; exports CREDVAULT_TEST_AIRFLOW (the `airflow` command)

CREDVAULT_TOOLS=${CREDVAULT_TOOLS:-/opt/credvault-tools}
AIRFLOW_VERSION=3.3.2
AIRFLOW_VENV="$CREDVAULT_TOOLS/airflow-$AIRFLOW_VERSION"

airflow_install_start() {
    local log=$1
    AIRFLOW_INSTALL_PID=
    [ -f "$AIRFLOW_VENV/.complete" ] && return 0
    echo "==> installing apache-airflow $AIRFLOW_VERSION from PyPI into $AIRFLOW_VENV (in the background)"
    (
        set -e
        rm -rf "$AIRFLOW_VENV"
        mkdir -p "$CREDVAULT_TOOLS"
        python3 -m venv "$AIRFLOW_VENV"
        "$AIRFLOW_VENV/bin/pip" install -q --disable-pip-version-check \
            "apache-airflow==$AIRFLOW_VERSION" psycopg2-binary
        "$AIRFLOW_VENV/bin/airflow" version
        touch "$AIRFLOW_VENV/.complete"
    ) >"$log" 2>&1 &
    AIRFLOW_INSTALL_PID=$!
}

airflow_install_wait() {
    local log=$1
    if [ -n "${AIRFLOW_INSTALL_PID:-}" ] && ! wait "$AIRFLOW_INSTALL_PID"; then
        echo "installing apache-airflow failed:" >&2
        cat "$log" >&2
        return 1
    fi
    if [ ! -f "$AIRFLOW_VENV/.complete" ]; then
        echo "apache-airflow is not installed in $AIRFLOW_VENV" >&2
        return 1
    fi
    export CREDVAULT_TEST_AIRFLOW="$AIRFLOW_VENV/bin/airflow"
}
