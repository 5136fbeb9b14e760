package org.doorstep

import java.io.File
import java.nio.file.Files

/**
 * A bench binary, not a test: prints the time of typical calls across the
 * boundary (generated Kotlin -> JNA -> Rust and back).
 * `mvn -q test-compile exec:java -Pbench` (see pom.xml).
 */
fun main() {
    val dir = Files.createTempDirectory("doorstep-bench").toFile()
    fun measure(name: String, iterations: Int, call: () -> Unit) {
        repeat(iterations / 10) { call() } // warm up
        val start = System.nanoTime()
        repeat(iterations) { call() }
        val ns = (System.nanoTime() - start) / iterations
        println("%-52s %8d ns/call  (%d calls)".format(name, ns, iterations))
    }
    measure("checkCccd (strings in, unit out)", 100_000) { checkCccd("001190012345", "1990-03-15", "F") }
    measure("validateHousehold (record in, list out)", 20_000) {
        validateHousehold(
            HouseholdRecord("hh-1", "01.001.00001", "Số 12, Thôn Đông", "m1", null, null,
                listOf(MemberRecord("m1", "Nguyễn Thị Hồng Nhung", "1990-03-15", "F", "001190012345", "head",
                    "0912345678", "permanent", "Nông dân")), listOf()),
        )
    }
    DoorstepStore.openForTests(File(dir, "s.db").path).use { store ->
        store.createProfile("officer", ProfileRole.OFFICER, "246810", null)
        store.unlock("officer", "246810", null)
        val head = memberFromChipCardText("001190012345||Nguyễn Thị Hồng Nhung|15031990|Nữ|Hà Nội|20042021")
        val id = store.createHousehold(
            HouseholdRecord("", "01.001.00001", "Số 12, Thôn Đông", head.memberId, null, null,
                listOf(head.copy(relation = "head", residenceStatus = "permanent")), listOf()),
        ).householdId
        measure("store.household (decrypt + Automerge load + record out)", 5_000) { store.household(id) }
        measure("store.searchCccd (blind index + summary)", 20_000) { store.searchCccd("001190012345") }
    }
    dir.deleteRecursively()
}
