// The Kotlin bindings on the JVM against a real relay (started by mobile/tests/kotlin.rs):
// two grid workers' phones, offline writes, sync, a live session with an observer, a conflict,
// a wrong password; a volunteer's encrypted replica, its wrong keys and the write its role may
// not make. Any failed check throws, which exits non-zero.
import java.time.LocalDate
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlin.system.exitProcess
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import org.gridsync.*
import org.gridsync.example.JobOutcome
import org.gridsync.example.TodayScreen
import org.gridsync.example.backgroundSync

fun <T> LinkedBlockingQueue<T>.await(what: String, check: (T) -> Boolean): T {
    val end = System.nanoTime() + TimeUnit.SECONDS.toNanos(20)
    while (true) {
        val left = end - System.nanoTime()
        check(left > 0) { "no $what within 20 s" }
        val next = poll(left, TimeUnit.NANOSECONDS) ?: continue
        if (check(next)) return next
    }
}

fun signIn(dir: String, server: String, user: String, password: String): Replica {
    val replica = Replica.open(OpenOptions(folder = dir))
    val account = replica.signIn(SignInOptions(server = server, user = user, password = password, deviceName = "$user 的手机"))
    check(account.user == user && account.grids == listOf("g1")) { "signed in as $account" }
    return replica
}

fun main(args: Array<String>) {
    val (server, password, work) = args
    val today = LocalDate.parse("2026-11-02")

    // The words of records, as the dashboard shows them: labels and choices for a form.
    check(kindLabel("case") == Label(zh = "帮扶个案", en = "Assistance case")) { "${kindLabel("case")}" }
    check(fieldLabel("household", "residents[0].id_number")?.zh == "身份证号")
    check(fieldLabel("household", "headname") == null)
    check(choiceLabel("case", "status", "in_progress")?.zh == "帮扶中")
    check(choiceLabel("stock", "movements[].kind", "out")?.en == "Out")
    check(recordSchema().contains("\"kind\":\"task\"")) { "the schema lists no tasks" }

    // A wrong password: one exception type, a stable code, both languages.
    val stranger = Replica.open(OpenOptions(folder = "$work/stranger"))
    try {
        stranger.signIn(SignInOptions(server = server, user = "wang", password = "not it"))
        error("a wrong password was accepted")
    } catch (e: GridsyncException) {
        check(e.code() == ErrorCode.BAD_CREDENTIALS) { "code ${e.code()}: $e" }
        check(e.messageZh() == "用户名或密码错误" && e.messageEn() == "wrong username or password") { "$e" }
        println("wrong password: ${e.code()} / $e")
    }
    check(stranger.whoAmI() == null)

    val wang = signIn("$work/wang", server, "wang", password)
    val li = signIn("$work/li", server, "li", password)

    // Offline: a household due today, then a visit that met it.
    val household = wang.create("household", """{"head_name":"张三","household_type":"registered",
        "visit_class":"priority","next_visit_due":"$today",
        "address":{"estate":"幸福小区","building":"3","unit":"2","door":"301"}}""")
    val screen = TodayScreen(wang, today)
    val due = runBlocking { screen.householdsDue().first { rows -> rows.any { it.id == household.id } } }
    check(due.single().title == "张三 幸福小区-3-2-301") { "due: $due" }
    val visit = screen.recordVisit(household.id, "老人身体好，\"门锁\"已修")
    check(visit.kind == "visit" && visit.json.contains("门锁"))
    runBlocking { screen.householdsDue().first { rows -> rows.none { it.id == household.id } } }
    check(wang.status().unsentChanges > 0u)

    check(backgroundSync(wang) == JobOutcome.DONE)
    check(wang.status().unsentChanges == 0uL) { "${wang.status()}" }
    check(li.syncOnce(SyncOnceOptions()).complete)
    check(li.get(visit.id)?.json?.contains("门锁") == true)
    println("sync: li received the household and the visit")

    // Live: li's change reaches wang's screen through the session and an observer.
    val states = LinkedBlockingQueue<SessionState>()
    val session = wang.liveSession(object : LiveSessionListener {
        override fun onState(state: SessionState) { states.add(state) }
    })
    session.start()
    states.await("a live session") { it is SessionState.Live }
    val seen = LinkedBlockingQueue<FieldRecord>()
    val observation = wang.observeRecord(household.id, object : RecordListener {
        override fun onChange(record: FieldRecord?) { if (record != null) seen.add(record) }
    })
    seen.await("the first answer") { true }
    li.update(household.id, """{"notes":"李明补充：子女在外地"}""")
    li.syncOnce(SyncOnceOptions())
    val pushed = seen.await("li's change") { it.json.contains("子女在外地") }
    println("live: ${pushed.id} arrived from li")
    observation.cancel()
    session.stop()
    check(session.state() == SessionState.Stopped)

    // A conflict: both set the assigned worker offline, then sync.
    wang.update(household.id, """{"assigned_worker":"wang"}""")
    li.update(household.id, """{"assigned_worker":"li"}""")
    wang.syncOnce(SyncOnceOptions())
    li.syncOnce(SyncOnceOptions())
    wang.syncOnce(SyncOnceOptions())
    val conflict = wang.conflicts().single()
    val field = conflict.fields.single { it.field == "assigned_worker" }
    check(conflict.recordId == household.id && field.values.map { it.author }.toSet() == setOf("wang", "li")) { "$conflict" }
    println("conflict: ${field.values.map { "${it.json} by ${it.author}" }}")

    // The cost of a call: a list of 100 households through the binding.
    repeat(100) { wang.create("household", """{"head_name":"户主$it","household_type":"registered"}""") }
    val hundred = RecordQuery(kind = "household", limit = 100u)
    repeat(20) { wang.list(hundred) }
    val calls = 200
    val started = System.nanoTime()
    repeat(calls) { check(wang.list(hundred).size == 100) }
    val micros = (System.nanoTime() - started) / 1000 / calls
    println("list of 100 households through Kotlin: $micros µs a call")

    // A volunteer's phone with an encrypted replica (the key would come from the Keystore).
    val key = ByteArray(32) { (it * 7 + 1).toByte() }
    val zhouDir = "$work/zhou"
    val zhou = Replica.open(OpenOptions(folder = zhouDir, key = key))
    val volunteer = zhou.signIn(SignInOptions(server = server, user = "zhou", password = password))
    check(volunteer.role == "volunteer" && volunteer.writableKinds == listOf("patrol")) { "$volunteer" }
    // A case is not the volunteer's to write: refused on the phone, in the relay's words.
    try {
        zhou.create("case", """{"case_type":"low_income","subject_name":"张三"}""")
        error("a volunteer's case was stored")
    } catch (e: GridsyncException) {
        check(e.code() == ErrorCode.NOT_ALLOWED) { "code ${e.code()}: $e" }
        check(e.messageZh() == "巡逻志愿者无权写入帮扶个案" && e.messageEn() == "a volunteer may not write case records") { "$e" }
        println("volunteer's case: ${e.code()} / $e")
    }
    check(zhou.status().unsentChanges == 0uL) { "${zhou.status()}" }
    val patrol = zhou.create("patrol", """{"started_at":"2026-11-02T20:00:00Z","hand_over_notes":"东门路灯坏了"}""")
    check(zhou.syncOnce(SyncOnceOptions()).complete)
    check(zhou.status().refused.isEmpty()) { "${zhou.status()}" }
    zhou.close()
    // Without the key, or with another, the replica does not open; with it, all is there.
    for (wrong in listOf(null, ByteArray(32) { 9 })) {
        try {
            Replica.open(OpenOptions(folder = zhouDir, key = wrong))
            error("the replica opened with key ${wrong?.size}")
        } catch (e: GridsyncException) {
            check(e.code() == ErrorCode.WRONG_KEY) { "code ${e.code()}: $e" }
            println("wrong key: ${e.code()} / $e")
        }
    }
    val reopened = Replica.open(OpenOptions(folder = zhouDir, key = key))
    check(reopened.whoAmI()?.user == "zhou")
    check(reopened.get(patrol.id)?.json?.contains("东门路灯坏了") == true) { "the patrol log after reopening" }
    check(reopened.count(RecordQuery(kind = "patrol")) == 1uL)
    reopened.close()

    println("KOTLIN BINDINGS OK")
    exitProcess(0)
}
