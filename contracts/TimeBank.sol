// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ITimeBank} from "./ITimeBank.sol";

/**
 * @title TimeBank
 * @notice The on-chain half of a city's elderly-care time bank (养老服务"时间银行"): districts, stations,
 * accounts with their balances in minutes, Merkle roots of anchored batches of service orders, and
 * revocations. Every administrative command carries the administrator's EIP-712 signature, checked here,
 * so the relayer that sends the transaction can neither forge nor alter one.
 *
 * Wire formats are those of PROTOCOL.md: EIP-712 domain {name: "TimeBank", version: "1"}, the struct
 * types of sections 3 and 4, the leaf `keccak256(bytes.concat(keccak256(abi.encode(digest, station))))`
 * of section 5 and the views of section 8.
 */
contract TimeBank is ITimeBank, AccessControl, EIP712 {
    /// @notice Accounts allowed to anchor batches and relay commands.
    bytes32 public constant RELAYER_ROLE = keccak256("RELAYER_ROLE");

    uint8 public constant KIND_VOLUNTEER = 1;
    uint8 public constant KIND_RECIPIENT = 2;
    uint8 public constant KIND_GROUP = 3;
    uint8 public constant KIND_POOL = 4;

    uint8 public constant STATUS_ACTIVE = 1;
    uint8 public constant STATUS_FROZEN = 2;
    uint8 public constant STATUS_CANCELLED = 3;

    /// @notice Service type of a transfer: minutes given, no service delivered, nothing earned.
    uint16 public constant SERVICE_TYPE_TRANSFER = 100;

    /// @notice Bytes of one entry of `anchorBatch`'s `deltas`: account, earned, received, spent.
    uint256 public constant DELTA_SIZE = 44;

    bytes32 public constant SERVICE_ORDER_TYPEHASH = keccak256(
        "ServiceOrder(bytes32 orderId,uint32 district,bytes32 volunteer,bytes32 payer,bytes32 recipient,uint16 serviceType,uint64 startTime,uint64 endTime,uint32 minutes,bytes32 detailsHash)"
    );
    bytes32 public constant REGISTER_DISTRICT_TYPEHASH =
        keccak256("RegisterDistrict(uint32 district,address admin,uint64 nonce)");
    bytes32 public constant REGISTER_STATION_TYPEHASH =
        keccak256("RegisterStation(address station,uint32 district,uint64 nonce)");
    bytes32 public constant REMOVE_STATION_TYPEHASH = keccak256("RemoveStation(address station,uint64 nonce)");
    bytes32 public constant REGISTER_ACCOUNT_TYPEHASH =
        keccak256("RegisterAccount(bytes32 account,uint32 district,uint8 kind,uint64 nonce)");
    bytes32 public constant SET_ACCOUNT_STATUS_TYPEHASH =
        keccak256("SetAccountStatus(bytes32 account,uint8 status,uint16 reason,uint64 nonce)");
    bytes32 public constant GRANT_TYPEHASH = keccak256("Grant(bytes32 account,uint32 minutes,uint16 reason,uint64 nonce)");
    bytes32 public constant REVOKE_ORDER_TYPEHASH = keccak256("RevokeOrder(bytes32 orderId,uint16 reason,uint64 nonce)");
    bytes32 public constant REGISTER_AUDITOR_TYPEHASH =
        keccak256("RegisterAuditor(address auditor,uint32 district,uint64 nonce)");

    /// @dev One storage slot per account (176 bits), so a batch touches one slot per account.
    struct Account {
        uint32 district;
        uint8 kind;
        uint8 status;
        int64 balance;
        uint64 earned;
    }

    struct Station {
        uint32 district;
        uint64 activeFrom;
        uint64 activeUntil;
    }

    /// @dev Keyed by root: one slot answers both `batchIdOfRoot` and the rest of `getBatch`.
    struct BatchInfo {
        uint64 id;
        uint32 count;
        uint64 anchoredAtBlock;
    }

    struct Auditor {
        bool registered;
        uint32 district;
    }

    /// @notice The city bureau's administrator, fixed at deployment.
    address public immutable cityAdmin;

    uint64 private _batchCount;
    mapping(uint64 batchId => bytes32 root) private _batchRoots;
    mapping(bytes32 root => BatchInfo) private _batches;
    mapping(bytes32 account => Account) private _accounts;
    mapping(address station => Station) private _stations;
    mapping(uint32 district => address admin) private _districtAdmins;
    mapping(address admin => uint32 district) private _adminDistricts;
    mapping(address auditor => Auditor) private _auditors;
    mapping(bytes32 orderId => bool) private _revoked;
    mapping(address signer => mapping(uint64 nonce => bool)) private _nonces;

    /**
     * @param cityAdmin_ the city bureau's administrator: signs district and auditor commands, and may sign
     * any district's commands; also holds the role admin of `RELAYER_ROLE`.
     * @param relayer the first account allowed to anchor batches.
     */
    constructor(address cityAdmin_, address relayer) EIP712("TimeBank", "1") {
        if (cityAdmin_ == address(0) || relayer == address(0)) revert TimeBankZeroAddress();
        cityAdmin = cityAdmin_;
        _grantRole(DEFAULT_ADMIN_ROLE, cityAdmin_);
        _grantRole(RELAYER_ROLE, relayer);
    }

    // =====================================================================================================
    // Administrative commands (PROTOCOL.md section 4)
    // =====================================================================================================

    /**
     * @notice Creates a district, or replaces its administrator.
     * @dev Requirements: signed by the city administrator; `district` non-zero; `admin` non-zero, not the
     * city administrator and not already the administrator of another district; nonce unused.
     * Emits {DistrictRegistered} and {NonceUsed}.
     */
    function registerDistrict(RegisterDistrict calldata cmd, bytes calldata signature) external {
        _authorizeCity(
            keccak256(abi.encode(REGISTER_DISTRICT_TYPEHASH, cmd.district, cmd.admin, cmd.nonce)), signature, cmd.nonce
        );
        if (cmd.district == 0) revert TimeBankInvalidDistrict(0);
        if (cmd.admin == address(0) || cmd.admin == cityAdmin) revert TimeBankZeroAddress();
        uint32 current = _adminDistricts[cmd.admin];
        if (current != 0 && current != cmd.district) revert TimeBankAdminInUse(cmd.admin, current);
        address previous = _districtAdmins[cmd.district];
        if (previous == cmd.admin) return;
        if (previous != address(0)) delete _adminDistricts[previous];
        _districtAdmins[cmd.district] = cmd.admin;
        _adminDistricts[cmd.admin] = cmd.district;
        emit DistrictRegistered(cmd.district, previous, cmd.admin);
    }

    /**
     * @notice Registers a station's terminal key in a district, active from this block.
     * @dev Requirements: signed by that district's administrator or the city's; district registered;
     * station never registered before (a removed key is not reused). Emits {StationRegistered}.
     */
    function registerStation(RegisterStation calldata cmd, bytes calldata signature) external {
        _authorizeDistrict(
            keccak256(abi.encode(REGISTER_STATION_TYPEHASH, cmd.station, cmd.district, cmd.nonce)),
            signature,
            cmd.nonce,
            cmd.district
        );
        _requireDistrict(cmd.district);
        if (cmd.station == address(0)) revert TimeBankZeroAddress();
        Station storage s = _stations[cmd.station];
        if (s.district != 0) revert TimeBankStationExists(cmd.station, s.district);
        s.district = cmd.district;
        s.activeFrom = uint64(block.number);
        emit StationRegistered(cmd.station, cmd.district, uint64(block.number));
    }

    /**
     * @notice Ends a station's registration at this block; orders anchored before stay valid, orders
     * anchored from this block on no longer verify (PROTOCOL.md section 7, step 4).
     * @dev Requirements: signed by the station district's administrator or the city's; station registered
     * and not removed. Emits {StationRemoved}.
     */
    function removeStation(RemoveStation calldata cmd, bytes calldata signature) external {
        Station storage s = _stations[cmd.station];
        _authorizeDistrict(
            keccak256(abi.encode(REMOVE_STATION_TYPEHASH, cmd.station, cmd.nonce)), signature, cmd.nonce, s.district
        );
        if (s.district == 0) revert TimeBankUnknownStation(cmd.station);
        if (s.activeUntil != 0) revert TimeBankStationRemoved(cmd.station, s.activeUntil);
        s.activeUntil = uint64(block.number);
        emit StationRemoved(cmd.station, s.district, uint64(block.number));
    }

    /**
     * @notice Opens an account (volunteer, recipient, group or pool) in a district, active, with no minutes.
     * @dev Requirements: signed by that district's administrator or the city's; district registered;
     * kind 1 to 4; account not registered before. Emits {AccountRegistered}.
     */
    function registerAccount(RegisterAccount calldata cmd, bytes calldata signature) external {
        _authorizeDistrict(
            keccak256(abi.encode(REGISTER_ACCOUNT_TYPEHASH, cmd.account, cmd.district, cmd.kind, cmd.nonce)),
            signature,
            cmd.nonce,
            cmd.district
        );
        _requireDistrict(cmd.district);
        if (cmd.kind < KIND_VOLUNTEER || cmd.kind > KIND_POOL) revert TimeBankInvalidKind(cmd.kind);
        Account storage a = _accounts[cmd.account];
        if (a.status != 0) revert TimeBankAccountExists(cmd.account);
        a.district = cmd.district;
        a.kind = cmd.kind;
        a.status = STATUS_ACTIVE;
        emit AccountRegistered(cmd.account, cmd.district, cmd.kind);
    }

    /**
     * @notice Freezes, unfreezes or cancels an account. A frozen account neither earns nor pays; a
     * cancelled one never again. Setting the status it already has changes nothing and emits nothing.
     * @dev Requirements: signed by the account district's administrator or the city's; status 1 to 3;
     * account registered and not cancelled. Emits {AccountStatusChanged} on a change.
     */
    function setAccountStatus(SetAccountStatus calldata cmd, bytes calldata signature) external {
        Account storage a = _accounts[cmd.account];
        _authorizeDistrict(
            keccak256(abi.encode(SET_ACCOUNT_STATUS_TYPEHASH, cmd.account, cmd.status, cmd.reason, cmd.nonce)),
            signature,
            cmd.nonce,
            a.district
        );
        if (cmd.status < STATUS_ACTIVE || cmd.status > STATUS_CANCELLED) revert TimeBankInvalidStatus(cmd.status);
        uint8 previous = a.status;
        if (previous == 0) revert TimeBankUnknownAccount(cmd.account);
        if (previous == STATUS_CANCELLED) revert TimeBankAccountCancelled(cmd.account);
        if (previous == cmd.status) return;
        a.status = cmd.status;
        emit AccountStatusChanged(cmd.account, previous, cmd.status, cmd.reason);
    }

    /**
     * @notice Grants minutes to an account (hours issued to an eligible elderly person, 发放时间).
     * @dev Requirements: signed by the account district's administrator or the city's; account active;
     * minutes non-zero. Emits {Granted} with the new balance.
     */
    function grant(Grant calldata cmd, bytes calldata signature) external {
        Account storage a = _accounts[cmd.account];
        _authorizeDistrict(
            keccak256(abi.encode(GRANT_TYPEHASH, cmd.account, cmd.minutes_, cmd.reason, cmd.nonce)),
            signature,
            cmd.nonce,
            a.district
        );
        _requireActive(cmd.account, a.status);
        if (cmd.minutes_ == 0) revert TimeBankZeroMinutes();
        int64 balance = a.balance + int64(uint64(cmd.minutes_));
        a.balance = balance;
        emit Granted(cmd.account, cmd.minutes_, cmd.reason, balance);
    }

    /**
     * @notice Revokes an anchored order found false and reverses exactly its movement of minutes, once:
     * the volunteer loses the credit (and, unless a transfer, the earned minutes), the payer gets the
     * debit back. A clawback may leave a balance negative; frozen or cancelled accounts are reversed too.
     * @param order the order's fields as signed; `order.orderId` must equal `cmd.orderId`.
     * @param station the station whose signature the anchored leaf names.
     * @param batchId the batch the order was anchored in, and `proof` its Merkle proof there.
     * @dev Requirements: signed by the administrator of `order.district` or the city's; the order's leaf
     * is in the batch; not revoked before. Emits {OrderRevoked}.
     */
    function revokeOrder(
        RevokeOrder calldata cmd,
        bytes calldata signature,
        ServiceOrder calldata order,
        address station,
        uint64 batchId,
        bytes32[] calldata proof
    ) external {
        _authorizeDistrict(
            keccak256(abi.encode(REVOKE_ORDER_TYPEHASH, cmd.orderId, cmd.reason, cmd.nonce)),
            signature,
            cmd.nonce,
            order.district
        );
        if (cmd.orderId != order.orderId) revert TimeBankOrderMismatch(cmd.orderId, order.orderId);
        if (_revoked[order.orderId]) revert TimeBankOrderAlreadyRevoked(order.orderId);
        bytes32 root = _batchRoots[batchId];
        if (root == bytes32(0)) revert TimeBankUnknownBatch(batchId);
        bytes32 leaf = _leaf(hashServiceOrder(order), station);
        if (!MerkleProof.verifyCalldata(proof, root, leaf)) revert TimeBankInvalidProof(batchId, leaf);

        _revoked[order.orderId] = true;
        int64 amount = int64(uint64(order.minutes_));
        Account storage volunteer = _accounts[order.volunteer];
        volunteer.balance -= amount;
        if (order.serviceType != SERVICE_TYPE_TRANSFER) {
            uint64 earned = volunteer.earned;
            volunteer.earned = earned > uint64(amount) ? earned - uint64(amount) : 0;
        }
        _accounts[order.payer].balance += amount;
        emit OrderRevoked(order.orderId, batchId, cmd.reason);
    }

    /**
     * @notice Registers an auditor, for one district or (district 0) the whole city; registering again
     * moves the auditor to another district.
     * @dev Requirements: signed by the city administrator; a non-zero district is registered.
     * Emits {AuditorRegistered}.
     */
    function registerAuditor(RegisterAuditor calldata cmd, bytes calldata signature) external {
        _authorizeCity(
            keccak256(abi.encode(REGISTER_AUDITOR_TYPEHASH, cmd.auditor, cmd.district, cmd.nonce)), signature, cmd.nonce
        );
        if (cmd.auditor == address(0)) revert TimeBankZeroAddress();
        if (cmd.district != 0) _requireDistrict(cmd.district);
        Auditor storage au = _auditors[cmd.auditor];
        if (au.registered && au.district == cmd.district) return;
        uint32 previous = au.district;
        au.registered = true;
        au.district = cmd.district;
        emit AuditorRegistered(cmd.auditor, previous, cmd.district);
    }

    // =====================================================================================================
    // Anchoring
    // =====================================================================================================

    /**
     * @notice Anchors the Merkle root of a batch of orders and moves the batch's minutes.
     * @param root the OpenZeppelin standard Merkle tree root over `[order digest, station]` leaves.
     * @param count the number of leaves.
     * @param deltas packed entries of 44 bytes, one per account: `account (32) ‖ earned (uint32) ‖
     * received (uint32) ‖ spent (uint32)`. `earned` (service credits) adds to the balance and the lifetime
     * earned minutes, `received` (transfers in) to the balance only, `spent` (debits) is taken from it.
     * @dev Requirements: caller holds `RELAYER_ROLE`; `count` non-zero; root never anchored; every account
     * registered and active; an account that spends ends the batch with a balance of zero or more.
     * Any refusal reverts the whole batch. Emits {BatchAnchored}.
     */
    function anchorBatch(bytes32 root, uint32 count, bytes calldata deltas) external onlyRole(RELAYER_ROLE) {
        if (count == 0) revert TimeBankEmptyBatch();
        if (deltas.length % DELTA_SIZE != 0) revert TimeBankMalformedDeltas(deltas.length);
        BatchInfo storage info = _batches[root];
        if (info.id != 0) revert TimeBankRootAlreadyAnchored(root, info.id);
        uint64 batchId = ++_batchCount;
        info.id = batchId;
        info.count = count;
        info.anchoredAtBlock = uint64(block.number);
        _batchRoots[batchId] = root;

        _applyDeltas(deltas);
        emit BatchAnchored(batchId, root, count);
    }

    /**
     * @dev The per-account loop of `anchorBatch`, in assembly because it is where the gas of a batch goes:
     * each account's slot (the `Account` struct: district 0-31, kind 32-39, status 40-47, balance 48-111,
     * earned 112-175) is read once and written once, with the same checks and custom errors as
     * `_requireActive` and the balance rule of `anchorBatch`, and checked int64/uint64 ranges.
     */
    function _applyDeltas(bytes calldata deltas) private {
        bytes4 unknownAccount = TimeBankUnknownAccount.selector;
        bytes4 notActive = TimeBankAccountNotActive.selector;
        bytes4 insufficient = TimeBankInsufficientBalance.selector;
        assembly ("memory-safe") {
            mstore(32, _accounts.slot) // the mapping's slot stays in scratch space for every key's hash
            let end := add(deltas.offset, deltas.length)
            for { let at := deltas.offset } lt(at, end) { at := add(at, 44) } {
                let id := calldataload(at)
                let amounts := calldataload(add(at, 32))
                let earned := shr(224, amounts)
                let spent := and(shr(160, amounts), 0xffffffff)
                mstore(0, id)
                let slot := keccak256(0, 64)
                let word := sload(slot)
                let status := and(shr(40, word), 0xff)
                if iszero(eq(status, 1)) {
                    let p := mload(0x40)
                    if iszero(status) {
                        mstore(p, unknownAccount)
                        mstore(add(p, 4), id)
                        revert(p, 36)
                    }
                    mstore(p, notActive)
                    mstore(add(p, 4), id)
                    mstore(add(p, 36), status)
                    revert(p, 68)
                }
                // balance after credits (earned + received), as a signed 256-bit value
                let bal := add(signextend(7, shr(48, word)), add(earned, and(shr(192, amounts), 0xffffffff)))
                if spent {
                    if slt(bal, spent) {
                        let p := mload(0x40)
                        mstore(p, insufficient)
                        mstore(add(p, 4), id)
                        mstore(add(p, 36), bal)
                        mstore(add(p, 68), spent)
                        revert(p, 100)
                    }
                    bal := sub(bal, spent)
                }
                let total := add(and(shr(112, word), 0xffffffffffffffff), earned)
                if or(sgt(bal, 0x7fffffffffffffff), gt(total, 0xffffffffffffffff)) {
                    mstore(0, shl(224, 0x4e487b71)) // Panic(0x11): arithmetic overflow, as checked code does
                    mstore(4, 0x11)
                    revert(0, 36)
                }
                word := or(
                    and(word, not(shl(48, 0xffffffffffffffffffffffffffffffff))),
                    or(shl(48, and(bal, 0xffffffffffffffff)), shl(112, total))
                )
                sstore(slot, word)
            }
        }
    }

    // =====================================================================================================
    // Views (PROTOCOL.md section 8)
    // =====================================================================================================

    /// @notice A batch's root, leaf count and block; all zero for an unknown id.
    function getBatch(uint64 batchId) external view returns (bytes32 root, uint32 count, uint64 anchoredAtBlock) {
        root = _batchRoots[batchId];
        BatchInfo storage info = _batches[root];
        if (root != bytes32(0)) (count, anchoredAtBlock) = (info.count, info.anchoredAtBlock);
    }

    /// @notice The id of the batch that anchored `root`; 0 when never anchored. Ids start at 1.
    function batchIdOfRoot(bytes32 root) external view returns (uint64) {
        return _batches[root].id;
    }

    /// @notice The number of batches anchored, which is also the latest batch id.
    function batchCount() external view returns (uint64) {
        return _batchCount;
    }

    /// @notice A station's district and the blocks it is active from and until (0: still active).
    function getStation(address station)
        external
        view
        returns (uint32 district, uint64 activeFromBlock, uint64 activeUntilBlock)
    {
        Station storage s = _stations[station];
        return (s.district, s.activeFrom, s.activeUntil);
    }

    /// @notice An account as the chain holds it; status 0 means unknown.
    function getAccount(bytes32 account)
        external
        view
        returns (uint32 district, uint8 kind, uint8 status, int64 balanceMinutes, uint64 earnedMinutes)
    {
        Account storage a = _accounts[account];
        return (a.district, a.kind, a.status, a.balance, a.earned);
    }

    /// @notice Whether an order was revoked.
    function isRevoked(bytes32 orderId) external view returns (bool) {
        return _revoked[orderId];
    }

    /// @notice 0 to 5 stars at 100, 300, 600, 1,000 and 1,500 earned hours.
    function starLevel(bytes32 account) external view returns (uint8) {
        uint64 earned = _accounts[account].earned;
        if (earned >= 1500 * 60) return 5;
        if (earned >= 1000 * 60) return 4;
        if (earned >= 600 * 60) return 3;
        if (earned >= 300 * 60) return 2;
        if (earned >= 100 * 60) return 1;
        return 0;
    }

    /// @notice The administrator of a district; zero when the district is not registered.
    function districtAdmin(uint32 district) external view returns (address) {
        return _districtAdmins[district];
    }

    /// @notice Whether `auditor` is registered, and for which district (0: city-wide).
    function getAuditor(address auditor) external view returns (bool registered, uint32 district) {
        Auditor storage au = _auditors[auditor];
        return (au.registered, au.district);
    }

    /// @notice Whether `signer` has used `nonce` in a command.
    function nonceUsed(address signer, uint64 nonce) external view returns (bool) {
        return _nonces[signer][nonce];
    }

    /// @notice The EIP-712 digest of an order (PROTOCOL.md section 3).
    function hashServiceOrder(ServiceOrder calldata order) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    SERVICE_ORDER_TYPEHASH,
                    order.orderId,
                    order.district,
                    order.volunteer,
                    order.payer,
                    order.recipient,
                    order.serviceType,
                    order.startTime,
                    order.endTime,
                    order.minutes_,
                    order.detailsHash
                )
            )
        );
    }

    /**
     * @notice Verifies an order end to end, for anyone with an `eth_call`: its digest, the station's
     * signature, its inclusion in batch `batchId`, the station registered for the order's district at
     * the batch's block, and whether it was revoked since. Never reverts on bad input.
     */
    function verifyOrder(
        ServiceOrder calldata order,
        bytes calldata signature,
        address station,
        uint64 batchId,
        bytes32[] calldata proof
    ) external view returns (OrderVerification memory v) {
        v.digest = hashServiceOrder(order);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(v.digest, signature);
        v.signer = err == ECDSA.RecoverError.NoError ? signer : address(0);
        v.signedByStation = v.signer != address(0) && v.signer == station;
        bytes32 root = _batchRoots[batchId];
        v.included = root != bytes32(0) && MerkleProof.verifyCalldata(proof, root, _leaf(v.digest, station));
        uint64 atBlock = _batches[root].anchoredAtBlock;
        Station storage s = _stations[station];
        v.stationActive = v.included && s.district == order.district && s.activeFrom <= atBlock
            && (s.activeUntil == 0 || atBlock < s.activeUntil);
        v.revoked = _revoked[order.orderId];
        v.valid = v.signedByStation && v.included && v.stationActive && !v.revoked;
    }

    // =====================================================================================================
    // Internals
    // =====================================================================================================

    function _leaf(bytes32 digest, address station) private pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(digest, station))));
    }

    function _authorizeCity(bytes32 structHash, bytes calldata signature, uint64 nonce) private {
        address signer = ECDSA.recover(_hashTypedDataV4(structHash), signature);
        if (signer != cityAdmin) revert TimeBankUnauthorized(signer, 0);
        _useNonce(signer, nonce);
    }

    /// @dev The signer must be the city administrator or the administrator of `district`.
    function _authorizeDistrict(bytes32 structHash, bytes calldata signature, uint64 nonce, uint32 district)
        private
    {
        address signer = ECDSA.recover(_hashTypedDataV4(structHash), signature);
        if (signer != cityAdmin && (district == 0 || _districtAdmins[district] != signer)) {
            revert TimeBankUnauthorized(signer, district);
        }
        _useNonce(signer, nonce);
    }

    function _useNonce(address signer, uint64 nonce) private {
        if (_nonces[signer][nonce]) revert TimeBankNonceUsed(signer, nonce);
        _nonces[signer][nonce] = true;
        emit NonceUsed(signer, nonce);
    }

    function _requireDistrict(uint32 district) private view {
        if (_districtAdmins[district] == address(0)) revert TimeBankUnknownDistrict(district);
    }

    function _requireActive(bytes32 account, uint8 status) private pure {
        if (status == 0) revert TimeBankUnknownAccount(account);
        if (status != STATUS_ACTIVE) revert TimeBankAccountNotActive(account, status);
    }
}
