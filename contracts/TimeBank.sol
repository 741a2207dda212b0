// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Hashes} from "@openzeppelin/contracts/utils/cryptography/Hashes.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
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
 * of section 5, the views of section 8, and the canonical deltas, commitments and challenges of section 9:
 * a relayer states each batch's per-account amounts, and anyone holding the batch's orders can prove on
 * chain that they differ from what the stations signed; the contract then corrects every balance, revokes
 * the bad orders and takes `RELAYER_ROLE` from the relayer.
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

    /// @notice Bytes of one entry of `anchorBatch`'s canonical `deltas`: index, earned, received, spent (uint32 each).
    uint256 public constant DELTA_SIZE = 16;

    /// @notice Fault reasons of {BatchChallenged} (PROTOCOL.md section 9).
    uint8 public constant FAULT_SIGNATURE = 1;
    uint8 public constant FAULT_STATION = 2;
    uint8 public constant FAULT_AMOUNTS = 3;
    uint8 public constant FAULT_DUPLICATE = 4;
    /// @notice {OrderRevoked}'s reason for an order revoked by a challenge is this plus the fault's reason.
    uint16 public constant CHALLENGE_REVOCATION = 1000;

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
    bytes32 public constant REVOKE_ORDER_TYPEHASH =
        keccak256("RevokeOrder(bytes32 orderId,bytes32 digest,uint16 reason,uint64 nonce)");
    bytes32 public constant LINK_ACCOUNTS_TYPEHASH =
        keccak256("LinkAccounts(bytes32 payer,bytes32 beneficiary,bool linked,uint64 nonce)");
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

    /// @dev Keyed by batch id: who anchored it (the commitment's relayer) and whether it was challenged.
    struct BatchRecord {
        address relayer;
        bool challenged;
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
    mapping(uint64 batchId => bytes32 commitment) private _commitments;
    mapping(uint64 batchId => BatchRecord) private _batchRecords;
    /// @dev Accounts are kept by index (from 1), so a batch's 16-byte entries reach their slot directly.
    uint32 private _accountCount;
    mapping(uint32 index => Account) private _accounts;
    mapping(bytes32 account => uint32 index) private _accountIndexes;
    mapping(uint32 index => bytes32 account) private _accountIds;
    mapping(bytes32 payer => mapping(bytes32 beneficiary => bool)) private _links;
    /// @dev Times a copy of an order (`keccak256(batchId, leaf)`) had its minutes reversed: by `revokeOrder`
    /// or a challenge. Two identical leaves of one batch are two copies under one key.
    mapping(bytes32 copy => uint256) private _reversals;
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
     * city administrator ({TimeBankCityAdminAsDistrictAdmin}) and not already the administrator of another
     * district; nonce unused.
     * Emits {DistrictRegistered} and {NonceUsed}.
     */
    function registerDistrict(RegisterDistrict calldata cmd, bytes calldata signature) external {
        _authorizeCity(
            keccak256(abi.encode(REGISTER_DISTRICT_TYPEHASH, cmd.district, cmd.admin, cmd.nonce)), signature, cmd.nonce
        );
        if (cmd.district == 0) revert TimeBankInvalidDistrict(0);
        if (cmd.admin == address(0)) revert TimeBankZeroAddress();
        if (cmd.admin == cityAdmin) revert TimeBankCityAdminAsDistrictAdmin(cmd.admin);
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
     * @notice Opens an account (volunteer, recipient, group or pool) in a district, active, with no minutes,
     * and gives it the next account index (from 1, for good; PROTOCOL.md section 9).
     * @dev Requirements: signed by that district's administrator or the city's; district registered;
     * kind 1 to 4; account not registered before. Emits {AccountRegistered} with the index.
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
        if (_accountIndexes[cmd.account] != 0) revert TimeBankAccountExists(cmd.account);
        uint32 index = ++_accountCount;
        _accountIndexes[cmd.account] = index;
        _accountIds[index] = cmd.account;
        Account storage a = _accounts[index];
        a.district = cmd.district;
        a.kind = cmd.kind;
        a.status = STATUS_ACTIVE;
        emit AccountRegistered(cmd.account, cmd.district, cmd.kind, index);
    }

    /**
     * @notice Freezes, unfreezes or cancels an account. A frozen account neither earns nor pays; a
     * cancelled one never again. Setting the status it already has changes nothing and emits nothing.
     * @dev Requirements: signed by the account district's administrator or the city's; status 1 to 3;
     * account registered and not cancelled. Emits {AccountStatusChanged} on a change.
     */
    function setAccountStatus(SetAccountStatus calldata cmd, bytes calldata signature) external {
        Account storage a = _account(cmd.account);
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
        Account storage a = _account(cmd.account);
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
     * @param cmd names the order by its id and its EIP-712 digest (v1.1), so that whoever relays the
     * command cannot swap in another order that reuses the id.
     * @param order the order's fields as signed; `order.orderId` must equal `cmd.orderId` and its digest
     * `cmd.digest`.
     * @param station the station whose signature the anchored leaf names.
     * @param batchId the batch the order was anchored in, and `proof` its Merkle proof there.
     * @dev Requirements: signed by the administrator of `order.district` or the city's; the order's id and
     * digest are the command's; its leaf is in the batch; not revoked before. Emits {OrderRevoked}.
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
            keccak256(abi.encode(REVOKE_ORDER_TYPEHASH, cmd.orderId, cmd.digest, cmd.reason, cmd.nonce)),
            signature,
            cmd.nonce,
            order.district
        );
        if (cmd.orderId != order.orderId) revert TimeBankOrderMismatch(cmd.orderId, order.orderId);
        bytes32 digest = hashServiceOrder(order);
        if (digest != cmd.digest) revert TimeBankDigestMismatch(cmd.digest, digest);
        if (_revoked[order.orderId]) revert TimeBankOrderAlreadyRevoked(order.orderId);
        bytes32 leaf = _provenLeaf(batchId, digest, station, proof);

        _revoked[order.orderId] = true;
        _reversals[_copyKey(batchId, leaf)] += 1;
        _reverse(order);
        emit OrderRevoked(order.orderId, batchId, cmd.reason);
    }

    /**
     * @notice Records (or ends, `linked` false) the payer's consent that `beneficiary`, a family member, may
     * be served on the payer's hours or receive them as a transfer (PROTOCOL.md section 4, v1.1). Setting
     * what is already set changes nothing and emits nothing.
     * @dev Requirements: signed by the administrator of the payer's district or the city's; both accounts
     * registered. Emits {AccountsLinked} on a change.
     */
    function linkAccounts(LinkAccounts calldata cmd, bytes calldata signature) external {
        _authorizeDistrict(
            keccak256(abi.encode(LINK_ACCOUNTS_TYPEHASH, cmd.payer, cmd.beneficiary, cmd.linked, cmd.nonce)),
            signature,
            cmd.nonce,
            _account(cmd.payer).district
        );
        if (_accountIndexes[cmd.payer] == 0) revert TimeBankUnknownAccount(cmd.payer);
        if (_accountIndexes[cmd.beneficiary] == 0) revert TimeBankUnknownAccount(cmd.beneficiary);
        if (_links[cmd.payer][cmd.beneficiary] == cmd.linked) return;
        _links[cmd.payer][cmd.beneficiary] = cmd.linked;
        emit AccountsLinked(cmd.payer, cmd.beneficiary, cmd.linked);
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
     * @notice Anchors the Merkle root of a batch of orders, moves the batch's minutes and stores the
     * batch's commitment `keccak256(abi.encodePacked(msg.sender, deltas))` (PROTOCOL.md section 9).
     * @param root the OpenZeppelin standard Merkle tree root over `[order digest, station]` leaves.
     * @param count the number of leaves.
     * @param deltas canonical deltas: entries of 16 bytes, one per account whose amounts are not all zero,
     * `index (uint32) ‖ earned (uint32) ‖ received (uint32) ‖ spent (uint32)`, in ascending order of index.
     * `earned` (service credits) adds to the balance and the lifetime earned minutes, `received` (transfers
     * in) to the balance only, `spent` (debits) is taken from it.
     * @dev Requirements: caller holds `RELAYER_ROLE`; `count` non-zero; root never anchored; `deltas`
     * canonical ({TimeBankMalformedDeltas}, {TimeBankNonCanonicalDeltas}); every account registered and
     * active; an account that spends ends the batch with a balance of zero or more. Any refusal reverts the
     * whole batch. Emits {BatchAnchored}.
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
        _batchRecords[batchId].relayer = msg.sender;
        _commitments[batchId] = keccak256(abi.encodePacked(msg.sender, deltas));

        _applyDeltas(deltas);
        emit BatchAnchored(batchId, root, count);
    }

    /**
     * @dev The per-account loop of `anchorBatch`, in assembly because it is where the gas of a batch goes:
     * each entry's index must be above the previous one and its amounts not all zero; each account's slot
     * (the `Account` struct: district 0-31, kind 32-39, status 40-47, balance 48-111, earned 112-175) is read
     * once and written once, with the same checks and custom errors as `_requireActive` and the balance
     * rule of `anchorBatch`, and checked int64/uint64 ranges.
     */
    function _applyDeltas(bytes calldata deltas) private {
        bytes4 nonCanonical = TimeBankNonCanonicalDeltas.selector;
        bytes4 unknownIndex = TimeBankUnknownAccountIndex.selector;
        bytes4 notActive = TimeBankAccountNotActive.selector;
        bytes4 insufficient = TimeBankInsufficientBalance.selector;
        assembly ("memory-safe") {
            // the account id of `index`, for error data (only on the way to a revert)
            function accountId(index, idsSlot) -> id {
                mstore(0, index)
                mstore(32, idsSlot)
                id := sload(keccak256(0, 64))
            }
            let accountsSlot := _accounts.slot
            let end := add(deltas.offset, deltas.length)
            let previous := 0
            for { let at := deltas.offset } lt(at, end) { at := add(at, 16) } {
                let entry := shr(128, calldataload(at))
                let index := shr(96, entry)
                if or(iszero(gt(index, previous)), iszero(and(entry, 0xffffffffffffffffffffffff))) {
                    let p := mload(0x40)
                    mstore(p, nonCanonical)
                    mstore(add(p, 4), div(sub(at, deltas.offset), 16))
                    revert(p, 36)
                }
                previous := index
                let earned := and(shr(64, entry), 0xffffffff)
                let spent := and(entry, 0xffffffff)
                mstore(0, index)
                mstore(32, accountsSlot)
                let slot := keccak256(0, 64)
                let word := sload(slot)
                let status := and(shr(40, word), 0xff)
                if iszero(eq(status, 1)) {
                    let p := mload(0x40)
                    if iszero(status) {
                        mstore(p, unknownIndex)
                        mstore(add(p, 4), index)
                        revert(p, 36)
                    }
                    mstore(p, notActive)
                    mstore(add(p, 4), accountId(index, _accountIds.slot))
                    mstore(add(p, 36), status)
                    revert(p, 68)
                }
                // balance after credits (earned + received), as a signed 256-bit value
                let bal := add(signextend(7, shr(48, word)), add(earned, and(shr(32, entry), 0xffffffff)))
                if spent {
                    if slt(bal, spent) {
                        let p := mload(0x40)
                        mstore(p, insufficient)
                        mstore(add(p, 4), accountId(index, _accountIds.slot))
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
    // Challenges (PROTOCOL.md section 9)
    // =====================================================================================================

    /**
     * @notice Proves that a batch moved minutes no valid signed order backs, and corrects it.
     * @param batchId the batch; `relayer` and `anchoredDeltas` must hash to its commitment.
     * @param orders all the batch's orders, with their `stations` and `signatures`, in ascending order of
     * leaf hash: the OpenZeppelin standard Merkle tree built from their leaves must have the batch's root.
     * @dev A fault is: reason 1, a signature that does not recover to its station; reason 2, a station not
     * registered for the order's district or not active at the batch's block; reason 3, canonical deltas of
     * the valid orders that differ from `anchoredDeltas`. An order already reversed (revoked) before keeps
     * its place among the valid orders in the sum, so it is not reversed twice.
     * Requirements: batch known and not challenged before; the challenge is about this batch (commitment,
     * count, sorted leaves, root); at least one fault ({TimeBankNoFault}).
     * On a fault: the orders of reasons 1 and 2 are revoked ({OrderRevoked} with reason 1001 or 1002),
     * every account moves by the difference between the canonical and the anchored deltas (a balance may
     * go negative), `relayer` loses `RELAYER_ROLE`, the batch is marked challenged, and {BatchChallenged}
     * is emitted once per fault.
     */
    function challengeBatch(
        uint64 batchId,
        address relayer,
        bytes calldata anchoredDeltas,
        ServiceOrder[] calldata orders,
        address[] calldata stations,
        bytes[] calldata signatures
    ) external {
        Challenge memory c = _openChallenge(batchId, relayer, anchoredDeltas);
        uint256 n = orders.length;
        if (n != c.count || stations.length != n || signatures.length != n) {
            revert TimeBankLeafCountMismatch(batchId, c.count, n == c.count ? stations.length : n);
        }
        (c.digests, c.leaves) = _leavesOf(orders, stations);
        bytes32 computed = _standardRoot(c.leaves);
        if (computed != c.root) revert TimeBankRootMismatch(batchId, c.root, computed);
        c.anchored = _readAnchored(anchoredDeltas);
        _judge(c, orders, stations, signatures);
        if (c.faultCount == 0 && !c.amountsDiffer) revert TimeBankNoFault(batchId);
        _correct(c, relayer, orders);
    }

    /// @dev What `challengeBatch` works out about a batch before it corrects anything.
    struct Challenge {
        uint64 batchId;
        bytes32 root;
        uint32 count;
        uint64 atBlock;
        bytes32[] digests;
        bytes32[] leaves;
        uint8[] faults; // per order: 0 valid, else the fault's reason (+100 when reversed before)
        uint256 faultCount;
        uint256[] anchored; // the anchored entries, ascending by index, as words of the `_entries` layout
        uint256[] sums; // per anchored entry: the orders that count, summed (`_entries` layout)
        uint256[] extra; // entries of the orders that count whose account has no anchored entry
        uint256 extraCount;
        bool amountsDiffer; // the canonical deltas of the orders that count are not the anchored ones
    }

    function _openChallenge(uint64 batchId, address relayer, bytes calldata anchoredDeltas)
        private
        view
        returns (Challenge memory c)
    {
        _requireCommitment(batchId, relayer, anchoredDeltas);
        if (_batchRecords[batchId].challenged) revert TimeBankBatchAlreadyChallenged(batchId);
        c.batchId = batchId;
        c.root = _batchRoots[batchId];
        BatchInfo storage info = _batches[c.root];
        (c.count, c.atBlock) = (info.count, info.anchoredAtBlock);
    }

    function _leavesOf(ServiceOrder[] calldata orders, address[] calldata stations)
        private
        view
        returns (bytes32[] memory digests, bytes32[] memory leaves)
    {
        unchecked {
            uint256 n = orders.length;
            digests = new bytes32[](n);
            leaves = new bytes32[](n);
            for (uint256 i = 0; i < n; ++i) {
                digests[i] = hashServiceOrder(orders[i]);
                leaves[i] = _leaf(digests[i], stations[i]);
            }
        }
    }

    /// @dev Each order's fault, and the canonical deltas of the orders that count: the valid ones and the
    /// faulty ones reversed before (revoked by their administrator: their minutes are not reversed again).
    function _judge(
        Challenge memory c,
        ServiceOrder[] calldata orders,
        address[] calldata stations,
        bytes[] calldata signatures
    ) private view {
        unchecked {
            c.faults = new uint8[](orders.length);
            for (uint256 i = 0; i < orders.length; ++i) {
                c.faults[i] = _orderFault(orders[i], stations[i], signatures[i], c.digests[i], c.atBlock);
            }
            _sumCounted(c, orders);
        }
    }

    /// @dev Adds each counted order's two entries to the anchored entry of its account (found by binary
    /// search: anchored deltas are canonical, so ascending by index) or, when there is none, to `extra`;
    /// then whether the canonical deltas of the counted orders differ from the anchored ones.
    function _sumCounted(Challenge memory c, ServiceOrder[] calldata orders) private view {
        unchecked {
            uint256 n = orders.length;
            uint256 m = c.anchored.length;
            c.sums = new uint256[](m);
            for (uint256 p = 0; p < m; ++p) {
                c.sums[p] = (c.anchored[p] >> 192) << 192;
            }
            c.extra = new uint256[](2 * n);
            for (uint256 i = 0; i < n; ++i) {
                uint8 fault = c.faults[i];
                if (fault != 0) {
                    ++c.faultCount;
                    if (_reversals[_copyKey(c.batchId, c.leaves[i])] == 0) continue;
                    c.faults[i] = fault + 100; // reversed before: counted, and not reversed again
                }
                (uint256 volunteer, uint256 payer) = _entries(orders[i]);
                _place(c, volunteer);
                _place(c, payer);
            }
            for (uint256 p = 0; p < m; ++p) {
                if (c.sums[p] != c.anchored[p]) c.amountsDiffer = true;
            }
            for (uint256 k = 0; k < c.extraCount; ++k) {
                if (c.extra[k] << 64 != 0) c.amountsDiffer = true; // amounts of an account not anchored
            }
        }
    }

    function _place(Challenge memory c, uint256 entry) private pure {
        unchecked {
            uint256 index = entry >> 192;
            uint256 lo = 0;
            uint256 hi = c.anchored.length;
            while (lo < hi) {
                uint256 mid = (lo + hi) >> 1;
                uint256 at = c.anchored[mid] >> 192;
                if (at == index) {
                    c.sums[mid] += entry & ((1 << 192) - 1);
                    return;
                }
                if (at < index) lo = mid + 1;
                else hi = mid;
            }
            c.extra[c.extraCount++] = entry;
        }
    }

    /// @dev Anchored canonical deltas as words of the `_entries` layout.
    function _readAnchored(bytes calldata deltas) private pure returns (uint256[] memory words) {
        unchecked {
            uint256 m = deltas.length / DELTA_SIZE;
            words = new uint256[](m);
            for (uint256 p = 0; p < m; ++p) {
                uint256 entry;
                assembly ("memory-safe") {
                    entry := shr(128, calldataload(add(deltas.offset, mul(p, 16))))
                }
                words[p] = ((entry >> 96) << 192) | (((entry >> 64) & type(uint32).max) << 128)
                    | (((entry >> 32) & type(uint32).max) << 64) | (entry & type(uint32).max);
            }
        }
    }

    function _correct(Challenge memory c, address relayer, ServiceOrder[] calldata orders) private {
        _batchRecords[c.batchId].challenged = true;
        for (uint256 i = 0; i < orders.length; ++i) {
            uint8 fault = c.faults[i];
            if (fault == 0) continue;
            bytes32 orderId = orders[i].orderId;
            if (fault < 100) {
                _revoked[orderId] = true;
                _reversals[_copyKey(c.batchId, c.leaves[i])] += 1;
                emit OrderRevoked(orderId, c.batchId, CHALLENGE_REVOCATION + fault);
            } else {
                fault -= 100;
            }
            emit BatchChallenged(c.batchId, relayer, fault, orderId);
        }
        if (c.amountsDiffer) {
            _moveDifference(c);
            emit BatchChallenged(c.batchId, relayer, FAULT_AMOUNTS, bytes32(0));
        }
        _revokeRole(RELAYER_ROLE, relayer);
    }

    /**
     * @notice Proves one order id anchored twice (reason 4): two leaves whose orders have the same
     * `orderId`, each with its Merkle proof in its batch, `batchA < batchB`, or the same batch and two
     * positions (two different proofs; or, for two identical leaves side by side, a proof whose first
     * element is the leaf itself).
     * @dev Requirements: `relayerB` and `anchoredDeltasB` hash to batch B's commitment; at least one copy
     * proven was not reversed before ({TimeBankNothingToReverse}). Every copy proven and not yet reversed is
     * reversed as `revokeOrder` reverses it ({OrderRevoked} with reason 1004, once per copy), the order id
     * is revoked, `relayerB` loses `RELAYER_ROLE`, and {BatchChallenged}`(batchB, relayerB, 4, orderId)` is
     * emitted.
     */
    function challengeDuplicate(
        uint64 batchA,
        ServiceOrder calldata orderA,
        address stationA,
        bytes32[] memory proofA,
        uint64 batchB,
        ServiceOrder calldata orderB,
        address stationB,
        bytes32[] memory proofB,
        address relayerB,
        bytes memory anchoredDeltasB
    ) external {
        if (batchA > batchB) revert TimeBankDuplicateNotProven(batchA, batchB);
        _requireCommitment(batchB, relayerB, anchoredDeltasB);
        bytes32 leafA = _duplicateLeaf(batchA, orderA, stationA, proofA, orderB.orderId);
        bytes32 leafB = _duplicateLeaf(batchB, orderB, stationB, proofB, orderA.orderId);
        uint256 reversed;
        if (batchA == batchB && leafA == leafB) {
            reversed = _reverseTwice(batchA, leafA, orderA, proofA, proofB);
        } else {
            reversed = _reverseCopy(batchA, leafA, orderA, 1);
            reversed += _reverseCopy(batchB, leafB, orderB, 1);
        }
        _endDuplicate(reversed, orderA.orderId, batchB, relayerB);
    }

    /// @dev The leaf of `order`, proven in `batchId`, whose order id must be `otherId`.
    function _duplicateLeaf(
        uint64 batchId,
        ServiceOrder calldata order,
        address station,
        bytes32[] memory proof,
        bytes32 otherId
    ) private view returns (bytes32 leaf) {
        if (order.orderId != otherId) revert TimeBankOrderMismatch(order.orderId, otherId);
        bytes32 root = _batchRoots[batchId];
        if (root == bytes32(0)) revert TimeBankUnknownBatch(batchId);
        leaf = _leaf(hashServiceOrder(order), station);
        if (!MerkleProof.verify(proof, root, leaf)) revert TimeBankInvalidProof(batchId, leaf);
    }

    /// @dev One leaf twice in one batch: two positions, shown by two different proofs or by the leaf's
    /// sibling being the leaf itself; both copies reversed.
    function _reverseTwice(
        uint64 batchId,
        bytes32 leaf,
        ServiceOrder calldata order,
        bytes32[] memory proofA,
        bytes32[] memory proofB
    ) private returns (uint256) {
        bool twoPositions = keccak256(abi.encodePacked(proofA)) != keccak256(abi.encodePacked(proofB))
            || (proofA.length != 0 && proofA[0] == leaf);
        if (!twoPositions) revert TimeBankDuplicateNotProven(batchId, batchId);
        return _reverseCopy(batchId, leaf, order, 2);
    }

    function _endDuplicate(uint256 reversed, bytes32 orderId, uint64 batchB, address relayerB) private {
        if (reversed == 0) revert TimeBankNothingToReverse(orderId);
        _revoked[orderId] = true;
        _revokeRole(RELAYER_ROLE, relayerB);
        emit BatchChallenged(batchB, relayerB, FAULT_DUPLICATE, orderId);
    }

    /// @dev Reverses the copy `(batchId, leaf)` of `order` until it has been reversed `times` times; returns
    /// how many reversals this made.
    function _reverseCopy(uint64 batchId, bytes32 leaf, ServiceOrder calldata order, uint256 times)
        private
        returns (uint256 made)
    {
        bytes32 key = _copyKey(batchId, leaf);
        uint256 done = _reversals[key];
        while (done + made < times) {
            _reverse(order);
            emit OrderRevoked(order.orderId, batchId, CHALLENGE_REVOCATION + FAULT_DUPLICATE);
            ++made;
        }
        if (made != 0) _reversals[key] = done + made;
    }

    function _requireCommitment(uint64 batchId, address relayer, bytes memory deltas) private view {
        if (_batchRoots[batchId] == bytes32(0)) revert TimeBankUnknownBatch(batchId);
        if (keccak256(abi.encodePacked(relayer, deltas)) != _commitments[batchId]) {
            revert TimeBankCommitmentMismatch(batchId, relayer);
        }
    }

    /// @dev 0 for a valid order; 1 when `signature` does not recover to `station`; 2 when the station is not
    /// registered for the order's district or not active at block `atBlock` (PROTOCOL.md section 7, step 4).
    function _orderFault(
        ServiceOrder calldata order,
        address station,
        bytes calldata signature,
        bytes32 digest,
        uint64 atBlock
    ) private view returns (uint8) {
        if (signature.length != 65) return FAULT_SIGNATURE;
        (address signer, ECDSA.RecoverError err,) =
            ECDSA.tryRecover(digest, uint8(signature[64]), bytes32(signature[0:32]), bytes32(signature[32:64]));
        if (err != ECDSA.RecoverError.NoError || signer != station) return FAULT_SIGNATURE;
        Station storage s = _stations[station];
        if (s.district != order.district || s.activeFrom > atBlock || (s.activeUntil != 0 && atBlock >= s.activeUntil))
        {
            return FAULT_STATION;
        }
        return 0;
    }

    /// @dev An order's two entries for the canonical sum, as words `index << 192 | earned << 128 |
    /// received << 64 | spent` (64-bit fields, so sums of many orders never carry into the next field; an
    /// amount summed above uint32 can never equal an anchored one).
    function _entries(ServiceOrder calldata order) private view returns (uint256 volunteer, uint256 payer) {
        uint256 m = order.minutes_;
        volunteer = (uint256(_accountIndexes[order.volunteer]) << 192)
            | (order.serviceType == SERVICE_TYPE_TRANSFER ? m << 64 : m << 128);
        payer = (uint256(_accountIndexes[order.payer]) << 192) | m;
    }

    /// @dev Moves every account by the difference between the counted orders' amounts and the anchored ones.
    function _moveDifference(Challenge memory c) private {
        unchecked {
            for (uint256 p = 0; p < c.anchored.length; ++p) {
                (uint256 want, uint256 got) = (c.sums[p], c.anchored[p]);
                if (want != got) _adjustBy(want >> 192, _signedFields(want), _signedFields(got));
            }
            for (uint256 k = 0; k < c.extraCount; ++k) {
                uint256 entry = c.extra[k];
                _adjustBy(entry >> 192, _signedFields(entry), [int256(0), int256(0)]);
            }
        }
    }

    /// @dev [balance change, earned change] of an entry word (`_entries` layout).
    function _signedFields(uint256 w) private pure returns (int256[2] memory out) {
        int256 e = int256((w >> 128) & type(uint64).max);
        out[0] = e + int256((w >> 64) & type(uint64).max) - int256(w & type(uint64).max);
        out[1] = e;
    }

    function _adjustBy(uint256 index, int256[2] memory want, int256[2] memory got) private {
        if (index == 0 || index > type(uint32).max) return; // no account: nothing was moved
        int256 balanceDelta = want[0] - got[0];
        int256 earnedDelta = want[1] - got[1];
        if (balanceDelta != 0 || earnedDelta != 0) _adjust(_accounts[uint32(index)], balanceDelta, earnedDelta);
    }

    /// @dev Reverses an order's movement of minutes, as `revokeOrder` does.
    function _reverse(ServiceOrder calldata order) private {
        int256 amount = int256(uint256(order.minutes_));
        _adjust(_account(order.volunteer), -amount, order.serviceType == SERVICE_TYPE_TRANSFER ? int256(0) : -amount);
        _adjust(_account(order.payer), amount, 0);
    }

    /// @dev Adds to a balance (which may go negative) and to the earned minutes (never below zero). The
    /// unregistered account's slot (index 0) is never written.
    function _adjust(Account storage a, int256 balanceDelta, int256 earnedDelta) private {
        if (a.status == 0) return;
        if (balanceDelta != 0) a.balance = SafeCast.toInt64(int256(a.balance) + balanceDelta);
        if (earnedDelta != 0) {
            int256 earned = int256(uint256(a.earned)) + earnedDelta;
            a.earned = earned > 0 ? SafeCast.toUint64(uint256(earned)) : 0;
        }
    }

    /// @dev The leaf of `(digest, station)`, which must be in batch `batchId` by `proof`.
    function _provenLeaf(uint64 batchId, bytes32 digest, address station, bytes32[] calldata proof)
        private
        view
        returns (bytes32 leaf)
    {
        bytes32 root = _batchRoots[batchId];
        if (root == bytes32(0)) revert TimeBankUnknownBatch(batchId);
        leaf = _leaf(digest, station);
        if (!MerkleProof.verifyCalldata(proof, root, leaf)) revert TimeBankInvalidProof(batchId, leaf);
    }

    function _copyKey(uint64 batchId, bytes32 leaf) private pure returns (bytes32) {
        return keccak256(abi.encode(batchId, leaf));
    }

    /**
     * @dev The root of OpenZeppelin's StandardMerkleTree over `leaves` (leaf hashes, already in ascending
     * order, as the standard tree's builder sorts them): the tree is a flat array of `2n - 1` nodes whose
     * last `n` hold the leaves in reverse, node `i` the sorted-pair hash of nodes `2i + 1` and `2i + 2`.
     */
    function _standardRoot(bytes32[] memory leaves) private pure returns (bytes32) {
        unchecked {
            uint256 n = leaves.length;
            if (n == 0) revert TimeBankEmptyBatch();
            for (uint256 i = 1; i < n; ++i) {
                if (leaves[i] < leaves[i - 1]) revert TimeBankLeavesNotSorted(i);
            }
            bytes32[] memory tree = new bytes32[](2 * n - 1);
            for (uint256 i = 0; i < n; ++i) {
                tree[2 * n - 2 - i] = leaves[i];
            }
            for (uint256 i = n - 1; i > 0;) {
                --i;
                tree[i] = Hashes.commutativeKeccak256(tree[2 * i + 1], tree[2 * i + 2]);
            }
            return tree[0];
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
        Account storage a = _account(account);
        return (a.district, a.kind, a.status, a.balance, a.earned);
    }

    /// @notice An account's index in canonical deltas (PROTOCOL.md section 9); 0 when not registered.
    function accountIndex(bytes32 account) external view returns (uint32) {
        return _accountIndexes[account];
    }

    /// @notice The account holding `index`; zero when none does.
    function accountAt(uint32 index) external view returns (bytes32) {
        return _accountIds[index];
    }

    /// @notice The number of accounts registered, which is also the highest account index.
    function accountCount() external view returns (uint32) {
        return _accountCount;
    }

    /// @notice Whether `payer` has linked `beneficiary` (PROTOCOL.md section 4, v1.1).
    function isLinked(bytes32 payer, bytes32 beneficiary) external view returns (bool) {
        return _links[payer][beneficiary];
    }

    /// @notice A batch's commitment `keccak256(abi.encodePacked(relayer, deltas))`; zero for an unknown id.
    function getBatchCommitment(uint64 batchId) external view returns (bytes32) {
        return _commitments[batchId];
    }

    /// @notice The relayer that anchored a batch; zero for an unknown id.
    function getBatchRelayer(uint64 batchId) external view returns (address) {
        return _batchRecords[batchId].relayer;
    }

    /// @notice Whether a batch was challenged with a proven fault by `challengeBatch`.
    function isBatchChallenged(uint64 batchId) external view returns (bool) {
        return _batchRecords[batchId].challenged;
    }

    /**
     * @notice The root of OpenZeppelin's StandardMerkleTree over leaf hashes given in ascending order, as
     * `challengeBatch` builds it; for auditors and tests. Reverts with {TimeBankLeavesNotSorted} on
     * unsorted leaves, {TimeBankEmptyBatch} on none.
     */
    function standardMerkleRoot(bytes32[] calldata sortedLeaves) external pure returns (bytes32) {
        return _standardRoot(sortedLeaves);
    }

    /// @notice Whether an order was revoked.
    function isRevoked(bytes32 orderId) external view returns (bool) {
        return _revoked[orderId];
    }

    /// @notice 0 to 5 stars at 100, 300, 600, 1,000 and 1,500 earned hours.
    function starLevel(bytes32 account) external view returns (uint8) {
        uint64 earned = _account(account).earned;
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

    /// @dev An account's storage by id; the never-written slot of index 0 (all zero) when not registered.
    function _account(bytes32 account) private view returns (Account storage) {
        return _accounts[_accountIndexes[account]];
    }

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
