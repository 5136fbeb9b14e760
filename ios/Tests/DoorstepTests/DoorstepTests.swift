// Mirrors android/jvm-tests: the same flow through the generated Swift. The shipped bindings
// hold no test hook (no cheap key derivation, no panic probe): stores open as on a phone.
import Foundation
import XCTest
@testable import Doorstep

final class DoorstepTests: XCTestCase {
    private func tempPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString + name).path
    }

    private func household(_ head: MemberRecord) -> HouseholdRecord {
        var h = head
        h.relation = "head"
        h.residenceStatus = "permanent"
        return HouseholdRecord(householdId: "", areaCode: "01.001.00001", address: "Số 12, Thôn Đông, xã Tân Lập",
                               headMemberId: head.memberId, location: nil, housePhoto: nil, members: [h], events: [])
    }

    func testWrongPinIsTypedAndAHouseholdIsPrefilledFromACccdPhoto() throws {
        let store = try DoorstepStore.open(path: tempPath("field.db"))
        _ = try store.createProfile(label: "officer", role: .officer, pin: "246810", keyProvider: nil)
        XCTAssertThrowsError(try store.unlock(label: "officer", pin: "000000", keyProvider: nil)) { error in
            guard case DoorstepError.WrongPin(let failed) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(failed, 1)
        }
        _ = try store.unlock(label: "officer", pin: "246810", keyProvider: nil)
        let photo = try qrPng(text: "001190012345|187654321|Nguyễn Thị Hồng Nhung|15031990|Nữ|Số 12, Thôn Đông|20042021")
        let head = try memberFromChipCardImage(image: photo)
        XCTAssertEqual(head.fullName, "Nguyễn Thị Hồng Nhung")
        var bad = household(head)
        bad.address = ""
        XCTAssertEqual(validateHousehold(household: bad).map { $0.path }, ["address"])
        let saved = try store.createHousehold(household: household(head))
        XCTAssertTrue(saved.issues.isEmpty)
        XCTAssertEqual(try store.searchName(query: "nguyen thi hong nhung").first?.household.householdId, saved.householdId)
    }

    func testAPhotoIsStoredAndQrFramesArriveInAnyOrder() throws {
        let store = try DoorstepStore.open(path: tempPath("photo.db"))
        _ = try store.createProfile(label: "officer", role: .officer, pin: "246810", keyProvider: nil)
        _ = try store.unlock(label: "officer", pin: "246810", keyProvider: nil)
        let head = try memberFromChipCardText(text: "001190012345||Nguyễn Thị Hồng Nhung|15031990|Nữ|Hà Nội|20042021")
        let saved = try store.createHousehold(household: household(head))
        let picture = try qrPng(text: "Nhà số 12")
        let photo = try store.addHousePhoto(householdId: saved.householdId, image: picture, maxSide: 1600)
        XCTAssertEqual(photo.fullId.count, 64)
        XCTAssertNotNil(try store.housePhoto(householdId: saved.householdId, thumbnail: true))
        XCTAssertThrowsError(try store.addHousePhoto(householdId: saved.householdId, image: Data("no".utf8), maxSide: 1600))

        let bundle = Data((0..<3000).map { UInt8($0 % 251) })
        let frames = try bundleToFrames(bundle: bundle)
        let receiver = BundleReceiver()
        for frame in frames.reversed() {
            _ = try receiver.addFrameText(text: frame)
            _ = try receiver.addFrameText(text: frame)
        }
        XCTAssertEqual(try receiver.bundle(), bundle)
        XCTAssertThrowsError(try store.importBundle(bundle: bundle)) { error in
            guard case DoorstepError.TransferRefused = error else { return XCTFail("\(error)") }
        }
    }
}
