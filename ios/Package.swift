// swift-tools-version:5.9
// The Doorstep Swift package: the generated Swift bindings (Sources/Doorstep,
// never edited by hand) over the XCFramework that build-xcframework.sh makes.
import PackageDescription

let package = Package(
    name: "Doorstep",
    platforms: [.iOS(.v15)],
    products: [
        .library(name: "Doorstep", targets: ["Doorstep"]),
    ],
    targets: [
        .binaryTarget(name: "DoorstepFFI", path: "DoorstepFFI.xcframework"),
        .target(name: "Doorstep", dependencies: ["DoorstepFFI"], path: "Sources/Doorstep",
                exclude: ["DoorstepFFI.h", "DoorstepFFI.modulemap"]),
        .testTarget(name: "DoorstepTests", dependencies: ["Doorstep"], path: "Tests/DoorstepTests"),
    ]
)
