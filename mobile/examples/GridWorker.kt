package org.gridsync.example

import java.time.Duration
import java.time.Instant
import java.time.LocalDate
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow
import org.gridsync.ErrorCode
import org.gridsync.FieldRecord
import org.gridsync.GridsyncException
import org.gridsync.QueryListener
import org.gridsync.RecordQuery
import org.gridsync.RecordSummary
import org.gridsync.Replica
import org.gridsync.SyncOnceOptions

/** The rows of a query as a Flow, re-emitted whenever they change (like Room's `Flow`). */
fun Replica.watch(query: RecordQuery): Flow<List<RecordSummary>> = callbackFlow {
    val observation = observeQuery(query, object : QueryListener {
        override fun onChange(rows: List<RecordSummary>) {
            trySend(rows)
        }
    })
    awaitClose { observation.cancel() }
}

/** A grid worker's "today" screen without its views: what a ViewModel holds. */
class TodayScreen(private val replica: Replica, private val today: LocalDate = LocalDate.now()) {
    /** Households due for a visit today or earlier. */
    val dueToday = RecordQuery(kind = "household", dueBefore = today.plusDays(1).toString())

    /** Collect it in the screen (`collectAsState()`): a visit or a sync updates it. */
    fun householdsDue(): Flow<List<RecordSummary>> = replica.watch(dueToday)

    /** A door visit that met the household: stored at once, offline, synced later. Call it
     *  off the main thread (`withContext(Dispatchers.IO)`), as every gridsync call. */
    fun recordVisit(householdId: String, observations: String): FieldRecord {
        val visit = """{"household_id":${json(householdId)},"visit_type":"routine",
            "started_at":"${Instant.now()}","outcome":"met","observations":${json(observations)}}"""
        return replica.create("visit", visit)
    }
}

/** What a background job tells its scheduler. */
enum class JobOutcome { DONE, AGAIN, SIGN_IN }

/** The body of a WorkManager `Worker.doWork()` (or an iOS `BGAppRefreshTask`): one sync that
 *  stops within the job's budget; the next run resumes where this one stopped. */
fun backgroundSync(replica: Replica, budget: Duration = Duration.ofMinutes(8)): JobOutcome =
    try {
        val result = replica.syncOnce(SyncOnceOptions(deadline = budget))
        if (result.complete) JobOutcome.DONE else JobOutcome.AGAIN
    } catch (e: GridsyncException) {
        when (e.code()) {
            // The relay forgot this phone or revoked it: the worker has to act.
            ErrorCode.UNAUTHORIZED, ErrorCode.REVOKED, ErrorCode.NOT_SIGNED_IN -> JobOutcome.SIGN_IN
            else -> JobOutcome.AGAIN // UNREACHABLE and the rest: the next run tries again
        }
    }

/** A JSON string literal (an app would use kotlinx.serialization). */
fun json(text: String): String =
    "\"" + text.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n") + "\""
