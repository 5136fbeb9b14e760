package org.doorstep

import java.io.BufferedReader
import java.io.File
import java.io.InputStreamReader
import java.nio.file.Files
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows
import kotlinx.coroutines.runBlocking

/** Drives the generated Kotlin against the real native library and a real sync server. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class DoorstepTest {
    private val dir: File = Files.createTempDirectory("doorstep-jvm").toFile()
    private lateinit var server: Process
    private lateinit var serverDb: File
    private val area = "01.001.00001"

    @BeforeAll
    fun startServer() {
        serverDb = File(dir, "server.db")
        val bin = System.getProperty("doorstep.server.bin")
        server = ProcessBuilder(bin, "--db", serverDb.path, "serve", "--listen", "127.0.0.1:0", "--insecure-http")
            .redirectError(ProcessBuilder.Redirect.DISCARD)
            .start()
        val line = BufferedReader(InputStreamReader(server.inputStream)).readLine()
        url = "http://" + line.split(" ").first { it.startsWith("127.0.0.1:") }
    }

    @AfterAll
    fun stopServer() {
        server.destroyForcibly().waitFor()
        dir.deleteRecursively()
    }

    private lateinit var url: String

    private fun enrolmentPng(name: String, enrolArea: String = area, serverUrl: String = url): ByteArray {
        val out = File(dir, "$name.png")
        val bin = System.getProperty("doorstep.server.bin")
        val p = ProcessBuilder(bin, "--db", serverDb.path, "enrol", "--area", enrolArea, "--url", serverUrl, "--out", out.path)
            .redirectErrorStream(true).start()
        assertEquals(0, p.waitFor())
        return out.readBytes()
    }

    private fun officerStore(name: String): DoorstepStore {
        val store = DoorstepStore.openForTests(File(dir, "$name.db").path)
        store.createProfile("officer-$name", ProfileRole.OFFICER, "246810", null)
        store.unlock("officer-$name", "246810", null)
        return store
    }

    private fun household(head: MemberRecord) = HouseholdRecord(
        householdId = "",
        areaCode = area,
        address = "Số 12, Thôn Đông, xã Tân Lập",
        headMemberId = head.memberId,
        location = null,
        housePhoto = null,
        members = listOf(head.copy(relation = "head", residenceStatus = "permanent")),
        events = listOf(),
    )

    @Test
    fun `wrong PIN is a typed exception and a household is prefilled from a CCCD photo`() {
        DoorstepStore.openForTests(File(dir, "field.db").path).use { store ->
            store.createProfile("officer", ProfileRole.OFFICER, "246810", null)
            val e = assertThrows<DoorstepException.WrongPin> { store.unlock("officer", "000000", null) }
            assertEquals(1u, e.failedAttempts)
            assertThrows<DoorstepException.Locked> { store.listHouseholds(0u, 10u) }
            store.unlock("officer", "246810", null)

            val photo = qrPng("001190012345|187654321|Nguyễn Thị Hồng Nhung|15031990|Nữ|Số 12, Thôn Đông|20042021")
            val head = memberFromChipCardImage(photo)
            assertEquals("Nguyễn Thị Hồng Nhung", head.fullName)
            assertEquals("1990-03-15", head.dob)

            val bad = household(head).copy(address = "")
            val issues = validateHousehold(bad)
            assertEquals(listOf("address"), issues.map { it.path })
            assertTrue(issues[0].messageVi.isNotEmpty() && issues[0].messageEn.isNotEmpty())

            val saved = store.createHousehold(household(head))
            assertTrue(saved.issues.isEmpty())
            val hits = store.searchName("nguyen thi hong nhung")
            assertEquals(saved.householdId, hits.single().household.householdId)
            assertEquals(1, store.searchCccd("001190012345").size)
            assertThrows<DoorstepException.InvalidInput> { memberFromChipCardText("not a card") }
            assertThrows<DoorstepException.Other> { internalPanicProbe() }
        }
    }

    @Test
    fun `platform secret, PIN change, form, life events, duplicates, receipt and wipe`() {
        val keystore = object : KeyProvider {
            override fun platformSecret(profileLabel: String): ByteArray? = "keystore-secret-$profileLabel".toByteArray()
        }
        DoorstepStore.openForTests(File(dir, "day.db").path).use { store ->
            store.createProfile("officer", ProfileRole.OFFICER, "246810", keystore)
            assertThrows<DoorstepException.InvalidInput> { store.unlock("officer", "246810", null) }
            store.unlock("officer", "246810", keystore)
            store.changePin("246810", "135790", keystore)
            store.lock()
            assertThrows<DoorstepException.WrongPin> { store.unlock("officer", "246810", keystore) }
            store.unlock("officer", "135790", keystore)
            store.createProfile("helper", ProfileRole.HELPER, "1111", null)

            assertTrue(residenceSurveyJson().contains("\"members\""))
            val head = memberFromChipCardText("001190012345||Nguyễn Thị Hồng Nhung|15031990|Nữ|Hà Nội|20042021")
            val id = store.createHousehold(household(head)).householdId
            val withEvent = store.household(id).let {
                it.copy(events = it.events + LifeEventRecord(LifeEventType.MOVED_OUT, head.memberId, "2026-01-02", "Hà Nội", null))
            }
            store.updateHousehold(withEvent)
            assertEquals(LifeEventType.MOVED_OUT, store.household(id).events.single().kind)

            // Verified at the door: the household and its residents, by this officer; an edit after it shows.
            val verification = store.verifyHousehold(id, false, null, null)
            assertEquals("verified", verification.state)
            assertEquals("officer", verification.by)
            val verified = store.household(id)
            assertEquals("waiting", verified.reviewStatus)
            assertEquals("verified", verified.members.single().verification?.state)
            assertFalse(verified.editedAfterVerification)
            store.updateHousehold(verified.copy(address = "Số 13, Thôn Đông"))
            assertTrue(store.household(id).editedAfterVerification)
            assertThrows<DoorstepException.NotFound> { store.verifyHousehold(id, true, "sai tên", "no-such-member") }

            val probe = head.copy(memberId = "new", fullName = "Nguyen Thi Hong Nhung", cccd = null)
            val dups = store.findDuplicates(probe, null)
            assertEquals(id, dups.single().householdId)
            assertTrue(dups.single().score >= 0.85)
            assertTrue(dups.single().reasons.any { it.startsWith("date_of_birth: exact (+") }, dups.single().reasons.toString())

            val receipt = qrPng("DOORSTEP-RECEIPT:$id")
            assertTrue(receipt.size > 100 && receipt[1] == 'P'.code.toByte())

            store.unlock("helper", "1111", null)
            assertTrue(store.listHouseholds(0u, 10u).isEmpty(), "a helper does not see others' households")
            assertThrows<DoorstepException.NotPermitted> { store.household(id) }

            store.wipe()
            assertTrue(store.profiles().isEmpty())
        }
    }

    @Test
    fun `two stores sync through a real server, conflict, and resolve`() = runBlocking<Unit> {
        officerStore("a").use { a ->
            officerStore("b").use { b ->
                a.enrolFromQrImage(enrolmentPng("enrol-a"))
                b.enrolFromQrImage(enrolmentPng("enrol-b"))
                val head = memberFromChipCardText("001190012345||Nguyễn Thị Hồng Nhung|15031990|Nữ|Hà Nội|20042021")
                val id = a.createHousehold(household(head)).householdId
                val seen = CopyOnWriteArrayList<SyncProgressRecord>()
                val observer = object : SyncObserver {
                    override fun onProgress(progress: SyncProgressRecord) {
                        seen.add(progress)
                    }
                }
                assertEquals(1uL, a.sync(observer).pushed) // a suspend call on the library's runtime
                assertFalse(seen.isEmpty())
                assertEquals(1uL, seen.last().pushed)
                assertEquals(1uL, b.syncBlocking(null).pulled)

                val onA = a.household(id)
                a.updateHousehold(onA.copy(address = "Số 14, Thôn Đông"))
                val onB = b.household(id)
                b.updateHousehold(onB.copy(address = "Số 16, Thôn Đông"))
                a.sync(null); b.sync(null); a.sync(null)
                val conflicts = a.conflicts(id)
                assertEquals(listOf("address"), conflicts.map { it.path })
                assertEquals(2, conflicts[0].values.size)
                assertEquals(1, b.conflicts(id).size)

                a.resolveConflict(id, "address", "Số 16, Thôn Đông")
                a.sync(null); b.sync(null)
                assertTrue(a.conflicts(id).isEmpty())
                assertTrue(b.conflicts(id).isEmpty())
                assertEquals("Số 16, Thôn Đông", b.household(id).address)

                // The registry's signed verification slip, checked on the phone with no network.
                val slipPng = File(dir, "slip.png")
                val bin = System.getProperty("doorstep.server.bin")
                val p = ProcessBuilder(bin, "--db", serverDb.path, "slip", "--household", id, "--out", slipPng.path)
                    .redirectErrorStream(true).start()
                assertEquals(0, p.waitFor())
                val slip = b.verifySlipImage(slipPng.readBytes())
                assertEquals(id, slip.householdId)
                assertEquals("Nguyễn Thị Hồng Nhung", slip.members[0].name)
                assertEquals("2345", slip.members[0].cccdLast4)
                assertThrows<DoorstepException.InvalidInput> { b.verifySlipImage(qrPng("DSLIP1.forged.slip")) }
            }
        }
    }

    @Test
    fun `a household with its photo crosses to another store by QR frames, offline`() = runBlocking<Unit> {
        officerStore("tx-a").use { a ->
            officerStore("tx-b").use { b ->
                a.enrolFromQrImage(enrolmentPng("enrol-tx-a"))
                b.enrolFromQrImage(enrolmentPng("enrol-tx-b"))
                // Each sync brings the directory of the area's devices and their bundle keys.
                a.sync(null); b.sync(null); a.sync(null)
                assertTrue(a.bundlePeers().any { it.deviceId == b.deviceId() && !it.revoked })

                val head = memberFromChipCardText("001190012345||Nguyễn Thị Hồng Nhung|15031990|Nữ|Hà Nội|20042021")
                val id = a.createHousehold(household(head)).householdId
                // A picture of the house (any PNG or JPEG; this one happens to be a QR code).
                val photo = a.addHousePhoto(id, qrPng("Nhà số 12, Thôn Đông"), 1600u)
                assertTrue(photo.width > 0u && photo.fullId.length == 64)
                assertThrows<DoorstepException.InvalidInput> { a.addHousePhoto(id, "not an image".toByteArray(), 1600u) }
                // And a photo of the resident's birth certificate, on the member.
                val memberId = a.household(id).members[0].memberId
                a.addDocumentPhoto(id, memberId, qrPng("Giấy khai sinh số 123"), 1200u)
                assertThrows<DoorstepException.NotFound> { a.addDocumentPhoto(id, "nobody", qrPng("x"), 1200u) }
                assertTrue(a.household(id).members[0].documentPhoto!!.isNotEmpty())

                val bundle = a.exportBundle(b.deviceId(), listOf(id), null)
                val frames = bundleToFrames(bundle)
                val receiver = BundleReceiver()
                // The camera reads the frames backwards, each twice.
                var last: FrameProgressRecord? = null
                for (frame in frames.reversed()) {
                    last = receiver.addFrameText(frame)
                    receiver.addFrameText(frame)
                }
                assertTrue(last!!.complete)
                assertEquals(frames.size.toUInt(), last.total)
                assertThrows<DoorstepException.TransferRefused> { receiver.addFrameText("DSF1:bad") }

                val report = b.importBundle(receiver.bundle())
                assertEquals(a.deviceId(), report.senderDevice)
                assertEquals(1uL, report.changed)
                assertEquals(4uL, report.blobsAdded) // house and document, each photo and thumbnail
                assertEquals("Nguyễn Thị Hồng Nhung", b.household(id).members[0].fullName)
                assertTrue(b.housePhoto(id, true)!!.isNotEmpty())
                assertEquals(a.housePhoto(id, false)!!.toList(), b.housePhoto(id, false)!!.toList())
                assertEquals(a.documentPhoto(id, memberId, true)!!.toList(), b.documentPhoto(id, memberId, true)!!.toList())
                assertEquals(0uL, b.importBundle(bundle).changed) // twice changes nothing
                // Sealed to B: A cannot import its own bundle.
                assertThrows<DoorstepException.TransferRefused> { a.importBundle(bundle) }

                // B reaches the network and pushes what it got, photos after records.
                assertEquals(1uL, b.sync(null).pushed)
                assertEquals(4uL, b.syncAttachments().uploaded)
            }
        }
    }

    @Test
    fun `a UI call made while a sync waits on the network does not wait for it`() {
        val upstream = url.removePrefix("http://").split(":")
        HeldProxy(upstream[0], upstream[1].toInt()).use { proxy ->
            officerStore("held").use { store ->
                // A commune of its own, so that the other tests' commune sees none of this.
                val commune = "01.007.00001"
                store.enrolFromQrImage(
                    enrolmentPng("enrol-held", enrolArea = commune, serverUrl = "http://127.0.0.1:${proxy.port}"),
                )
                val head = memberFromChipCardText("001190012345||Nguyễn Thị Hồng Nhung|15031990|Nữ|Hà Nội|20042021")
                store.createHousehold(household(head).copy(areaCode = commune))
                proxy.hold()
                val pool = Executors.newFixedThreadPool(2)
                try {
                    val sync = pool.submit<SyncReportRecord> { store.syncBlocking(null) }
                    // The sync's request is on its way and its answer held back: the sync is waiting.
                    assertTrue(proxy.requestSeen.await(20, TimeUnit.SECONDS), "the sync reached the network")
                    val listed = pool.submit<Int> { store.listHouseholds(0u, 10u).size }
                    assertEquals(1, listed.get(10, TimeUnit.SECONDS)) // would time out if the sync held the store
                    assertFalse(sync.isDone, "the sync was still waiting when the UI call returned")
                    proxy.release()
                    assertEquals(1uL, sync.get(30, TimeUnit.SECONDS).pushed)
                } finally {
                    proxy.release()
                    pool.shutdownNow()
                }
            }
        }
    }

    @Test
    fun `after a panic caught while the store was held, the next call works`() {
        officerStore("panic").use { store ->
            val head = memberFromChipCardText("001190012345||Nguyễn Thị Hồng Nhung|15031990|Nữ|Hà Nội|20042021")
            val id = store.createHousehold(household(head)).householdId
            val e = assertThrows<DoorstepException.Other> { store.panicWhileHoldingStore() }
            assertTrue(e.reason.contains("internal error"))
            assertEquals(id, store.listHouseholds(0u, 10u).single().householdId)
            assertEquals("Nguyễn Thị Hồng Nhung", store.household(id).members[0].fullName)
        }
    }

    @Test
    fun `a district officer moves a household, asks for a transfer, and moves a resident`() = runBlocking<Unit> {
        officerStore("district").use { store ->
            // A district of its own, so that the other tests' commune sees none of this.
            store.enrolFromQrImage(enrolmentPng("enrol-district", enrolArea = "01.005"))
            val head = memberFromChipCardText("001190012345||Nguyễn Thị Hồng Nhung|15031990|Nữ|Hà Nội|20042021")
            val a = store.createHousehold(household(head).copy(areaCode = "01.005.00001")).householdId
            val other = head.copy(memberId = "m-b", fullName = "Trần Văn Bình", cccd = null)
            val b = store.createHousehold(household(other).copy(areaCode = "01.005.00001")).householdId
            val moved = store.moveHousehold(a, "01.005.00002", "")
            assertTrue(moved.moved)
            assertEquals("01.005.00002", store.household(a).areaCode)
            val asked = store.moveHousehold(b, "01.006.00004", "chuyển hộ khẩu")
            assertFalse(asked.moved)
            val request = store.transferRequests().single()
            assertEquals(asked.transferRequestId, request.requestId)
            assertEquals(TransferStatusRecord.PENDING, request.status)
            assertEquals("chuyển hộ khẩu", request.reason)
            assertThrows<DoorstepException.InvalidInput> { store.moveHousehold(b, "not an area", "") }

            val memberId = store.household(a).members[0].memberId
            val newId = store.moveResident(a, memberId, b, "2026-11-20", "spouse")
            assertEquals("moved_out", store.household(a).members[0].residenceStatus)
            assertEquals("$a/$memberId", store.household(b).members.single { it.memberId == newId }.samePersonAs)

            val report = store.sync(null)
            assertEquals(2uL, report.pushed)
            assertTrue(report.transfersDecided.isEmpty()) // no operator has decided yet
            assertEquals(TransferStatusRecord.PENDING, store.transferRequests().single().status)
        }
    }
}
