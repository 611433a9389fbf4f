"""Why simulated runs fail: realistic ``error-summary`` / ``error-details`` texts.

Summaries mimic CDM's connector errors (``Cdm.09xx``) and Java exceptions.  Some are longer
than 256 characters or contain quotes and newlines, because the exporter cuts summaries for a
label and must escape them; details are long stack traces (several KB), which must never
become a label.
"""

from __future__ import annotations

_SUMMARIES = (
    "Cdm.0901: Failed to connect to the database. Communications link failure: The last packet sent "
    "successfully to the server was 0 milliseconds ago.",
    "Cdm.0936: The amount of dirty data exceeds the threshold (limit 100, actual 1523).",
    'Cdm.0011: Failed to parse the parameter "fromJobConfig.tableName": '
    "table 'sales.orders_v2' doesn't exist",
    "java.io.IOException: Filesystem closed",
    "Cdm.0964: Failed to write data to the destination: ERROR: duplicate key value violates unique "
    'constraint "pk_orders"\n  Detail: Key (order_id)=(1048576) already exists.',
    "org.apache.hadoop.security.AccessControlException: Permission denied: user=cdm, access=WRITE, "
    'inode="/warehouse/ods":hive:hive:drwxr-xr-x ' + "(checked by the NameNode at hdfs-nn-01) " * 6,
    "Cdm.0000: System error. Job execution timed out after 7200 seconds.",
)

_FRAMES = (
    "org.apache.sqoop.connector.jdbc.GenericJdbcExecutor.executeQuery(GenericJdbcExecutor.java:{n})",
    "org.apache.sqoop.connector.jdbc.GenericJdbcExtractor.extract(GenericJdbcExtractor.java:{n})",
    "org.apache.sqoop.job.mr.SqoopMapper.run(SqoopMapper.java:{n})",
    "org.apache.hadoop.mapred.MapTask.runNewMapper(MapTask.java:{n})",
    "org.apache.hadoop.mapred.LocalJobRunner$Job$MapTaskRunnable.run(LocalJobRunner.java:{n})",
    "java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:{n})",
    "java.lang.Thread.run(Thread.java:{n})",
)


def error_summary(index: int) -> str:
    return _SUMMARIES[index % len(_SUMMARIES)]


def error_details(index: int) -> str:
    """A multi-KB stack trace ending in the summary's cause."""
    summary = error_summary(index)
    lines = [f"org.apache.sqoop.common.SqoopException: {summary}"]
    for depth in range(3):
        for k, frame in enumerate(_FRAMES):
            lines.append("\tat " + frame.format(n=100 + (index * 7 + depth * 31 + k * 13) % 900))
        lines.append(f"Caused by: java.lang.RuntimeException: wrapped failure level {depth + 1}")
    lines.append("\t... 42 more")
    return "\n".join(lines)
